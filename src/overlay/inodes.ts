/**
 * Inode numbers of the merged view, and the origin records of siblings.
 *
 * Owns: the mapping (device, inode) -> merged inode number, and the cache of each upper
 * inode's origin xattr.
 * Contract:
 * - A host entry shows its host inode number; a sibling shows the number of the host entry
 *   it was copied up from (its origin), so copy-up does not change what `stat` says, and
 *   hard links of a sibling (one upper inode) share one number. An entry created in the
 *   sandbox shows its store inode number. Numbers are made unique across devices by
 *   putting a per-mount device index in the high bits: index * 2^44 + ino.
 * - Stable for the life of a mount (device indexes are handed out in the order first seen;
 *   the host root's device is 0 and the store's is 1, so those are stable across mounts).
 * - Origins are cached by upper inode; only the daemon writes them, through `setOrigin`.
 * Does not: stat anything itself, except reading the origin xattr on a miss.
 */
import type fs from 'node:fs'
import { LRUCache } from 'lru-cache'
import { XATTR, parseOrigin, encodeOrigin, type Origin } from '../store/format.js'
import { lgetxattr, lsetxattr } from '../sys/native.js'

const INO_BITS = 2 ** 44

/** What the store's xattrs say about an upper entry. */
export interface UpperInfo {
  /** The host entry it was copied up from; null when created in the sandbox. */
  origin: Origin | null
  /** Id of its chunk map when it is a chunked file. */
  chunks: string | null
}
const NONE: UpperInfo = { origin: null, chunks: null }

export class InodeTable {
  private readonly devIndex = new Map<number, number>()
  private nextIndex = 2
  /** upper inode number -> its markers. ~100 bytes per entry. */
  private readonly infos = new LRUCache<number, UpperInfo>({ max: 65536 })

  constructor (hostDev: number, storeDev: number) {
    this.devIndex.set(hostDev, 0)
    if (storeDev !== hostDev) this.devIndex.set(storeDev, 1)
  }

  /** The merged inode number of (dev, ino). */
  map (dev: number, ino: number): number {
    let idx = this.devIndex.get(dev)
    if (idx === undefined) {
      idx = this.nextIndex++
      this.devIndex.set(dev, idx)
    }
    return idx * INO_BITS + (ino % INO_BITS)
  }

  /** The markers of the upper entry at `p` (fd-relative path) with stat `st`. */
  info (p: string, st: fs.BigIntStats): UpperInfo {
    if (st.isSymbolicLink()) return NONE // user.* xattrs cannot live on symlinks
    const key = Number(st.ino)
    const hit = this.infos.get(key)
    if (hit !== undefined) return hit
    const origin = parseOrigin(lgetxattr(p, XATTR.origin))
    const c = st.isFile() ? lgetxattr(p, XATTR.chunks) : null
    const info: UpperInfo = { origin, chunks: c === null ? null : c.toString('utf8') }
    this.infos.set(key, info)
    return info
  }

  /** The origin of the upper entry at `p`, or null (created in the sandbox). */
  origin (p: string, st: fs.BigIntStats): Origin | null {
    return this.info(p, st).origin
  }

  /** Writes the origin xattr of the upper entry at `p` and updates the cache. */
  setOrigin (p: string, upperIno: number, o: Origin): void {
    lsetxattr(p, XATTR.origin, encodeOrigin(o), 0)
    const cur = this.infos.get(upperIno)
    this.infos.set(upperIno, { origin: o, chunks: cur?.chunks ?? null })
  }

  /** Marks the upper file at `p` as chunked with map `id`. */
  setChunks (p: string, upperIno: number, id: string): void {
    lsetxattr(p, XATTR.chunks, Buffer.from(id), 0)
    this.infos.delete(upperIno) // re-read both markers on next use
  }

  /** Forgets the cached markers of an upper inode (it was replaced by rename). */
  forget (upperIno: number): void {
    this.infos.delete(upperIno)
  }

  /** The merged inode number of an upper entry. */
  upperIno (p: string, st: fs.BigIntStats): number {
    const o = this.origin(p, st)
    return o !== null ? this.map(o.dev, o.ino) : this.map(Number(st.dev), Number(st.ino))
  }
}
