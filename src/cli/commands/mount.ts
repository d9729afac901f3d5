/**
 * `siblingfs mount HOST MOUNTPOINT`: serve the merged view until a signal.
 */
import type { Argv, CommandModule } from 'yargs'
import { buildConfig } from '../../daemon/config.js'
import { startDaemon } from '../../daemon/main.js'
import { printLine } from '../output.js'
import { cacheOptions, storeOptions, withCacheOptions, withStoreOptions, type CacheArgs, type StoreArgs } from '../options.js'

interface Args extends CacheArgs, StoreArgs {
  host: string
  mountpoint: string
  store?: string
  'allow-other'?: boolean
  debug: boolean
}

export const mountCommand: CommandModule<object, Args> = {
  command: 'mount <host> <mountpoint>',
  describe: 'mount a writable, sandboxed view of HOST at MOUNTPOINT (stays in the foreground)',
  builder: (y: Argv) => withStoreOptions(withCacheOptions(y
    .positional('host', { type: 'string', demandOption: true, describe: 'the directory tree to show (never modified)' })
    .positional('mountpoint', { type: 'string', demandOption: true, describe: 'an empty directory outside HOST' })
    .option('store', { type: 'string', describe: 'where changes go (default: $XDG_DATA_HOME/siblingfs/<host>-<hash>)' })
    .option('allow-other', { type: 'boolean', describe: 'let other users use the mount (default: on when run as root)' })
    .option('debug', { type: 'boolean', default: false, describe: 'print every FUSE request (libfuse debug)' })
  )) as unknown as Argv<Args>,
  handler: async (a) => {
    // Signals are caught from the start: one arriving while the mount is being made must
    // still end in a clean unmount, not in a dead mount point.
    let stopRequested = false
    let wake: () => void = () => {}
    const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
    const onSig = (): void => { stopRequested = true; wake() }
    for (const s of sigs) process.on(s, onSig)
    try {
      const so = storeOptions(a)
      const cfg = buildConfig({
        host: a.host, mountpoint: a.mountpoint, store: a.store, allowOther: a['allow-other'], debug: a.debug,
        cache: cacheOptions(a), storeOptions: so.want, chunkCacheBytes: so.cacheBytes
      })
      const d = await startDaemon(cfg)
      if (!stopRequested) {
        printLine(`siblingfs: mounted ${cfg.host} at ${cfg.mountpoint} (store ${cfg.store})`)
        await new Promise<void>((resolve) => {
          wake = resolve
          void d.gone.then(resolve)
        })
      }
      await d.stop()
    } finally {
      for (const s of sigs) process.off(s, onSig)
    }
  }
}
