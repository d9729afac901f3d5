/**
 * The daemon: config -> store -> overlay -> mount, and back down again.
 *
 * Contract: `startDaemon` either returns a running mount, or throws having changed nothing
 * but (at most) creating the store it was pointed at. `stop()` unmounts, closes every
 * descriptor and releases the store lock; it is idempotent. Between the two, the store is
 * locked against a second daemon.
 * Does not: parse flags (cli/) or print anything but log lines.
 */
import fs from 'node:fs'
import path from 'node:path'
import { SiblingError, isCode } from '../errors.js'
import { loadFuse, mountOverlay, type Mounted } from '../fuse/mount.js'
import { Overlay } from '../overlay/overlay.js'
import { cleanWork, lockStore, openOrCreateStore, readManifest, storePaths, type Manifest } from '../store/format.js'
import { lgetxattr, lremovexattr, lsetxattr } from '../sys/native.js'
import { log } from '../log.js'
import { scanDrift } from '../tools/status.js'
import { warmUp } from './warmup.js'
import type { DaemonConfig } from './config.js'

export interface Daemon {
  readonly config: DaemonConfig
  readonly overlay: Overlay
  /** Resolves when the mount is gone (stop(), or an unmount by someone else). */
  readonly gone: Promise<void>
  stop (): Promise<void>
}

/** Refuses a store on a file system without user xattrs (where markers cannot live). */
function checkXattrs (upper: string): void {
  const probe = 'user.siblingfs.probe'
  try {
    lsetxattr(upper, probe, Buffer.from('1'), 0)
    if (lgetxattr(upper, probe) === null) throw new Error('xattr did not stick')
    lremovexattr(upper, probe)
  } catch (err) {
    throw new SiblingError('SFS_STORE_NO_XATTR', `the store's file system does not support user extended attributes (${upper})`, {
      cause: err,
      hint: isCode(err, 'EOPNOTSUPP') || isCode(err, 'ENOTSUP')
        ? 'put the store on ext4, xfs, btrfs or tmpfs (Linux 6.6 or later)'
        : 'check that the store directory is writable',
      exitCode: 73
    })
  }
}

export async function startDaemon (cfg: DaemonConfig): Promise<Daemon> {
  loadFuse() // fail on a missing libfuse before touching anything
  process.umask(0) // modes come from the kernel's requests, already masked by the caller's umask
  // A new store is made first (the lock file lives in it); an existing one is locked before
  // anything in it is touched (migration, the xattr probe), so a refused second daemon
  // changes nothing.
  if (readManifest(cfg.store) === undefined) openOrCreateStore(cfg.store, cfg.host, cfg.storeOptions)
  const unlock = lockStore(cfg.store)
  let overlay: Overlay | undefined
  let mounted: Mounted
  let manifest: Manifest
  try {
    manifest = openOrCreateStore(cfg.store, cfg.host, cfg.storeOptions)
    checkXattrs(storePaths(cfg.store).upper)
    overlay = new Overlay({ host: cfg.host, store: cfg.store, options: manifest.options, chunkCacheBytes: cfg.chunkCacheBytes })
    cleanWork(cfg.store)
    const scan = scanDrift(cfg.store, manifest)
    // A chunk map nothing refers to was left by a copy-up a killed daemon never committed.
    const sp = storePaths(cfg.store)
    const dangling = fs.readdirSync(sp.maps).filter(id => !scan.maps.has(id))
    for (const id of dangling) fs.rmSync(path.join(sp.maps, id), { force: true })
    if (dangling.length > 0) log(`removed ${dangling.length} chunk map(s) left by an interrupted copy-up`)
    for (const d of scan.drift) {
      log(`host drift: ${d.path} depends on ${d.origin}, which changed since the sibling was made (${d.kind === 'chunked' ? 'its unwritten chunks read as errors' : 'it shows the new host bytes'}); see \`siblingfs status\``)
    }
    await warmUp(sp.work, manifest.options)
    overlay.getattr('/') // resolves the root (descriptors, store records) before the first request
    overlay.copyup.refill() // the files the first copy-up renames into place (work/ is clean now)
    mounted = await mountOverlay(overlay, cfg.mountpoint, { ...cfg.cache, allowOther: cfg.allowOther, debug: cfg.debug })
  } catch (err) {
    overlay?.close()
    unlock()
    throw err
  }
  const ov = overlay
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await mounted.unmount()
      ov.close()
      unlock()
    })()
    return stopping
  }
  return { config: cfg, overlay: ov, gone: mounted.gone, stop }
}
