/**
 * `siblingfs fsck STORE`: checks a store and says what is wrong in words a person understands.
 *
 * Checks: the manifest (format, version, host); that no daemon has the store mounted; work/
 * (leftovers of operations a killed daemon never finished); every entry of upper/: markers
 * readable, metadata-only siblings and renamed directories still have their host originals,
 * chunked siblings have a map whose header and every stored chunk verify (checksums), and
 * whether their host original changed since they were made (drift); maps/ for maps no file
 * refers to (dangling).
 * `repair`: completes or removes unfinished operations in work/ (exactly what the next mount
 * would do) and deletes dangling maps. It never deletes anything the merged view shows: a
 * corrupt chunk or a missing host original is reported, not "fixed" by losing data.
 * Does not: print (the command module does).
 */
import fs from 'node:fs'
import path from 'node:path'
import { SiblingError, isCode } from '../errors.js'
import { ChunkCache, ChunkFile } from '../store/chunks.js'
import { SPARE_PREFIX, XATTR, parseOrigin, readManifest, storeLockedBy, storePaths, cleanWork, type Manifest } from '../store/format.js'
import { lgetxattr } from '../sys/native.js'
import { Overlay } from '../overlay/overlay.js'
import { sameHost } from '../overlay/chunkreg.js'

export type Severity = 'error' | 'warning' | 'fixed'

export interface Finding {
  severity: Severity
  /** Merged-view path or store file the finding is about. */
  path: string
  message: string
}

export interface FsckReport {
  store: string
  host: string
  version: number
  entries: number
  chunkedFiles: number
  findings: Finding[]
}

export function fsckStore (store: string, repair: boolean): FsckReport {
  const sp = storePaths(store)
  const man: Manifest | undefined = readManifest(store)
  if (man === undefined) {
    throw new SiblingError('SFS_NO_STORE', `${store} is not a siblingfs store (no siblingfs.json)`, { hint: 'pass the directory given as --store', exitCode: 66 })
  }
  const owner = storeLockedBy(store)
  if (owner !== undefined) {
    throw new SiblingError('SFS_STORE_BUSY', `the store at ${store} is mounted by process ${owner}`, { hint: 'unmount it first; fsck needs the store to itself', exitCode: 73 })
  }
  const findings: Finding[] = []
  const report: FsckReport = { store, host: man.host, version: man.version, entries: 0, chunkedFiles: 0, findings }
  for (const d of [sp.upper, sp.work, sp.maps]) {
    if (!fs.existsSync(d)) {
      if (repair) { fs.mkdirSync(d, { mode: 0o700 }); findings.push({ severity: 'fixed', path: d, message: `the ${path.basename(d)}/ directory was missing; made an empty one` }) } else findings.push({ severity: 'error', path: d, message: `the ${path.basename(d)}/ directory is missing` })
    }
  }
  if (!fs.existsSync(man.host)) findings.push({ severity: 'error', path: man.host, message: 'the host tree this store belongs to is gone' })

  const leftovers = fs.existsSync(sp.work) ? fs.readdirSync(sp.work).filter(n => !n.startsWith(SPARE_PREFIX)) : []
  if (leftovers.length > 0) {
    if (repair && fs.existsSync(man.host)) {
      // The overlay replays intents at construction; then work/ is emptied as at mount.
      const ov = new Overlay({ host: man.host, store, options: man.options, chunkCacheBytes: 1 << 20 })
      ov.close()
      cleanWork(store)
      findings.push({ severity: 'fixed', path: sp.work, message: `finished or removed ${leftovers.length} unfinished operation(s) left by a stopped daemon` })
    } else {
      findings.push({ severity: 'warning', path: sp.work, message: `${leftovers.length} unfinished operation(s) left by a stopped daemon (the next mount or --repair clears them)` })
    }
  }

  const cache = new ChunkCache(16 << 20)
  const opts = { chunkSize: man.options.chunkSize, compress: man.options.compress === 'lz4' }
  const referenced = new Set<string>()
  const walk = (dir: string, rel: string): void => {
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name)
      const mp = rel + '/' + name
      const st = fs.lstatSync(p)
      report.entries++
      if (st.isSymbolicLink()) continue
      const rawOrigin = lgetxattr(p, XATTR.origin)
      const origin = parseOrigin(rawOrigin)
      if (rawOrigin !== null && origin === null) findings.push({ severity: 'error', path: mp, message: 'its origin record is unreadable, so where its bytes come from is unknown' })
      if (st.isDirectory()) {
        const r = lgetxattr(p, XATTR.redirect)
        if (r !== null) {
          const target = path.join(man.host, r.toString('utf8'))
          if (!fs.existsSync(target)) findings.push({ severity: 'warning', path: mp, message: `it is a renamed host directory, but the original /${r.toString('utf8')} is gone from the host, so its unchanged files are gone too` })
        }
        walk(p, mp)
        continue
      }
      if (!st.isFile()) continue
      if (origin !== null && origin.data === 'host') {
        const h = fs.lstatSync(path.join(man.host, origin.path), { bigint: true, throwIfNoEntry: false })
        if (h === undefined) findings.push({ severity: 'error', path: mp, message: `its bytes are the host original's (/${origin.path}), which is gone: reads fail` })
        else if (String(h.mtimeNs) !== origin.mtimeNs || Number(h.size) !== origin.size) findings.push({ severity: 'warning', path: mp, message: `its host original /${origin.path} changed since the sandbox changed its metadata; the view shows the new bytes` })
      }
      const c = lgetxattr(p, XATTR.chunks)
      if (c === null) continue
      const id = c.toString('utf8')
      referenced.add(id)
      report.chunkedFiles++
      const mapPath = path.join(sp.maps, id)
      if (!fs.existsSync(mapPath)) {
        findings.push({ severity: 'error', path: mp, message: `its chunk map (maps/${id}) is missing: its bytes cannot be read` })
        continue
      }
      if (ChunkFile.isEmptyMap(mapPath)) {
        findings.push({ severity: 'warning', path: mp, message: `its chunk map maps/${id} is empty (the machine stopped before the file was first fsynced): it reads as it was made (${origin?.data === 'chunks' ? `its host original /${origin.path}` : 'empty'}); the daemon rewrites the map at its next open` })
        continue
      }
      let hostFd = -1
      if (origin !== null) {
        try { hostFd = fs.openSync(path.join(man.host, origin.path), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW) } catch { hostFd = -1 }
      }
      let file: ChunkFile
      try {
        file = ChunkFile.open(p, mapPath, opts, cache, hostFd)
      } catch (err) {
        findings.push({ severity: 'error', path: mp, message: `its chunk map maps/${id} is damaged: ${err instanceof Error ? err.message : String(err)}` })
        continue
      }
      try {
        for (const problem of file.verify()) findings.push({ severity: 'error', path: mp, message: problem })
        if (file.hostLimit > 0) {
          if (hostFd < 0) findings.push({ severity: 'error', path: mp, message: `its host original /${origin?.path ?? '?'} is gone: the chunks the sandbox did not write cannot be read` })
          else if (!sameHost(file.host, origin, fs.fstatSync(hostFd, { bigint: true }))) findings.push({ severity: 'warning', path: mp, message: `its host original /${origin?.path ?? '?'} changed since the sibling was made (host drift): the chunks the sandbox did not write read as errors` })
        }
      } finally {
        file.close()
      }
    }
  }
  if (fs.existsSync(sp.upper)) walk(sp.upper, '')

  if (fs.existsSync(sp.maps)) {
    for (const id of fs.readdirSync(sp.maps)) {
      if (referenced.has(id)) continue
      if (repair) {
        try { fs.rmSync(path.join(sp.maps, id), { force: true }) } catch (err) { if (!isCode(err, 'ENOENT')) throw err }
        findings.push({ severity: 'fixed', path: `maps/${id}`, message: 'removed a chunk map no file refers to' })
      } else {
        findings.push({ severity: 'warning', path: `maps/${id}`, message: 'a chunk map no file refers to (left by a stopped daemon; --repair removes it)' })
      }
    }
  }
  return report
}
