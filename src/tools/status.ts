/**
 * `siblingfs status`: a store at a glance, and which siblings depend on host files that
 * changed under them (host drift).
 *
 * Safe while mounted: it only reads the store (a live sandbox may change it meanwhile).
 */
import fs from 'node:fs'
import path from 'node:path'
import { SiblingError } from '../errors.js'
import { ChunkCache, ChunkFile } from '../store/chunks.js'
import { XATTR, parseOrigin, readManifest, storeLockedBy, storePaths, type Manifest, type StoreOptions } from '../store/format.js'
import { lgetxattr } from '../sys/native.js'
import { sameHost } from '../overlay/chunkreg.js'
import { diffStore, summarize, type DiffSummary } from './diff.js'

export interface Drift {
  path: string
  origin: string
  /** What depends on the changed original. */
  kind: 'chunked' | 'metadata-only'
}

export interface StatusReport {
  store: string
  host: string
  version: number
  options: StoreOptions
  mountedBy: number | null
  /** Bytes the store takes on disk (allocated blocks). */
  diskBytes: number
  chunkedFiles: number
  summary: DiffSummary
  drift: Drift[]
}

function diskUsage (p: string): number {
  const st = fs.lstatSync(p)
  let n = st.blocks * 512
  if (st.isDirectory()) for (const name of fs.readdirSync(p)) n += diskUsage(path.join(p, name))
  return n
}

export function storeStatus (store: string): StatusReport {
  const man = readManifest(store)
  if (man === undefined) throw new SiblingError('SFS_NO_STORE', `there is no store at ${store}`, { hint: 'pass --store, or run something in the sandbox first', exitCode: 66 })
  const { drift, chunkedFiles } = scanDrift(store, man)
  return {
    store,
    host: man.host,
    version: man.version,
    options: man.options,
    mountedBy: storeLockedBy(store) ?? null,
    diskBytes: diskUsage(store),
    chunkedFiles,
    summary: summarize(diffStore(man.host, store)),
    drift
  }
}

/** Siblings whose host original changed since they were made; read-only walk of upper/. */
export function scanDrift (store: string, man: Manifest): { drift: Drift[], chunkedFiles: number, maps: Set<string> } {
  const sp = storePaths(store)
  const drift: Drift[] = []
  const maps = new Set<string>()
  let chunkedFiles = 0
  const cache = new ChunkCache(1 << 20)
  const opts = { chunkSize: man.options.chunkSize, compress: man.options.compress === 'lz4' }
  const walk = (dir: string, rel: string): void => {
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name)
      const st = fs.lstatSync(p)
      if (st.isDirectory()) { walk(p, rel + '/' + name); continue }
      if (!st.isFile()) continue
      const origin = parseOrigin(lgetxattr(p, XATTR.origin))
      const c = lgetxattr(p, XATTR.chunks)
      if (c !== null) { chunkedFiles++; maps.add(c.toString('utf8')) }
      if (origin === null || origin.data === 'store') continue
      const hostPath = path.join(man.host, origin.path)
      const h = fs.lstatSync(hostPath, { bigint: true, throwIfNoEntry: false }) ?? null
      if (origin.data === 'host') {
        if (h === null || String(h.mtimeNs) !== origin.mtimeNs || Number(h.size) !== origin.size || (origin.ctimeNs !== undefined && origin.ctimeNs !== String(h.ctimeNs))) drift.push({ path: rel + '/' + name, origin: '/' + origin.path, kind: 'metadata-only' })
        continue
      }
      if (c === null) continue
      try {
        const f = ChunkFile.open(p, path.join(sp.maps, c.toString('utf8')), opts, cache, -1)
        const limit = f.hostLimit
        const host = f.host
        f.close()
        if (limit > 0 && (h === null || !sameHost(host, origin, h))) drift.push({ path: rel + '/' + name, origin: '/' + origin.path, kind: 'chunked' })
      } catch { /* fsck reports damaged maps */ }
    }
  }
  walk(sp.upper, '')
  return { drift, chunkedFiles, maps }
}
