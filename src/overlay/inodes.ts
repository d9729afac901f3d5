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

function infoKey (st: fs.BigIntStats): string {
  return `${st.ino}:${st.birthtimeNs}`
}

export class InodeTable {
  private readonly devIndex = new Map<number, number>()
  private nextIndex = 2
  /**
   * Upper inode -> its markers, keyed by inode number and birth time: a number the file
   * system hands out again after a file is deleted comes with a new birth time, so a new
   * file never inherits a deleted one's markers. ~150 bytes per entry.
   */
  private readonly infos = new LRUCache<string, UpperInfo>({ max: 65536 })

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
    const key = infoKey(st)
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

  /** Writes the origin xattr of the upper entry at `p` (stat `st`); the cache re-reads it. */
  setOrigin (p: string, st: fs.BigIntStats, o: Origin): void {
    lsetxattr(p, XATTR.origin, encodeOrigin(o), 0)
    this.infos.delete(infoKey(st))
  }

  /** Marks the upper file at `p` (stat `st`) as chunked with map `id`. */
  setChunks (p: string, st: fs.BigIntStats, id: string): void {
    lsetxattr(p, XATTR.chunks, Buffer.from(id), 0)
    this.infos.delete(infoKey(st))
  }

  /** Records what the caller just wrote as the markers of the upper inode with stat `st`
   *  (a sibling it made), so that the next look at it reads no xattr. */
  prime (st: fs.BigIntStats, info: UpperInfo): void {
    this.infos.set(infoKey(st), info)
  }

  /** Forgets the cached markers of an upper inode that is gone or replaced. */
  forget (st: fs.BigIntStats): void {
    this.infos.delete(infoKey(st))
  }

  /** The merged inode number of an upper entry. */
  upperIno (p: string, st: fs.BigIntStats): number {
    const o = this.origin(p, st)
    return o !== null ? this.map(o.dev, o.ino) : this.map(Number(st.dev), Number(st.ino))
  }
}
