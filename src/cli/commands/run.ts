/**
 * `siblingfs run -- CMD`: run a command in the sandbox, then say what it changed.
 */
import fs from 'node:fs'
import type { Argv, CommandModule } from 'yargs'
import { runSandboxed, type Isolation } from '../../tools/run.js'
import { formatSummary, printErrorLine } from '../output.js'
import { cacheOptions, storeOptions, withCacheOptions, withStoreOptions, type CacheArgs, type StoreArgs } from '../options.js'

interface Args extends CacheArgs, StoreArgs {
  host: string
  store?: string
  isolate: Isolation
  cmd: string[]
}

function defaultIsolation (): Isolation {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    try { fs.accessSync(dir + '/bwrap', fs.constants.X_OK); return 'bwrap' } catch { /* next */ }
  }
  return 'bwrap' // reported as missing, with a hint, when the run starts
}

export const runCommand: CommandModule<object, Args> = {
  command: 'run [cmd..]',
  describe: 'run CMD so that it sees the sandboxed view at the host\'s own path; print what changed',
  builder: (y: Argv) => withStoreOptions(withCacheOptions(y
    .usage('$0 run [--host DIR] [--store DIR] [--isolate bwrap|chroot|none] -- CMD [ARGS...]')
    .positional('cmd', { type: 'string', array: true, describe: 'the command and its arguments (after --)' })
    .option('host', { type: 'string', default: '.', describe: 'the directory tree to sandbox (default: the current directory)' })
    .option('store', { type: 'string', describe: 'where changes go (default: $XDG_DATA_HOME/siblingfs/<host>-<hash>)' })
    .option('isolate', { choices: ['bwrap', 'chroot', 'none'] as const, default: defaultIsolation(), describe: 'bwrap: view bound over HOST\'s path; chroot: view is the root; none: cwd in the mount' })
    .parserConfiguration({ 'populate--': true })
  )) as unknown as Argv<Args>,
  handler: async (a) => {
    const rest = (a as unknown as { '--'?: string[] })['--'] ?? []
    const cmd = [...(a.cmd ?? []), ...rest].map(String)
    const so = storeOptions(a)
    const r = await runSandboxed({ host: a.host, store: a.store, isolate: a.isolate, cmd, cwd: process.cwd(), cache: cacheOptions(a), storeOptions: so.want, chunkCacheBytes: so.cacheBytes })
    printErrorLine(`siblingfs: ${formatSummary(r.summary)} (store ${r.store}; see \`siblingfs diff --host ${a.host} --store ${r.store}\`)`)
    process.exitCode = r.exitCode
  }
}
