/**
 * Open files of the merged view.
 *
 * Owns: the table fh -> Handle. A handle owns one descriptor and the open flags; it does
 * not own a path (after unlink or rename it keeps working, like an open file on ext4).
 * Contract:
 * - fh numbers are small positive integers, reused after release (0 is never used: it
 *   means "no handle" to fuse-native).
 * - A read-only handle on a host original is registered under the original's identity, so
 *   that when the file is copied up, `retarget` moves every such handle to the sibling:
 *   a reader sees what a reader on ext4 would see, the written data.
 * Does not: resolve paths or copy anything.
 */
import fs from 'node:fs'
import type { ChunkFile } from '../store/chunks.js'

export interface Handle {
  /** The descriptor, or -1 for a chunked file (then `chunks` does the I/O). */
  fd: number
  /** A chunked sibling's engine and map id; null for plain files. */
  chunks: { id: string, file: ChunkFile, label: string } | null
  flags: number
  /** Merged inode number, for fstat of an unlinked file. */
  ino: number
  /** Where the descriptor points: the host original, or the store. */
  /** 'pending': opened for writing, not written yet; reads use the host original and the
   *  first write (or ftruncate) makes the sibling. */
  layer: 'host' | 'upper' | 'pending'
  /** Identity of the host original ("dev:ino") while layer is 'host'. */
  hostKey: string | null
}

export class HandleTable {
  private readonly table: Array<Handle | undefined> = [undefined]
  private readonly free: number[] = []
  private readonly byHost = new Map<string, Set<Handle>>()

  add (h: Handle): number {
    const fh = this.free.pop() ?? this.table.length
    this.table[fh] = h
    if (h.hostKey !== null) {
      let set = this.byHost.get(h.hostKey)
      if (set === undefined) { set = new Set(); this.byHost.set(h.hostKey, set) }
      set.add(h)
    }
    return fh
  }

  get (fh: number): Handle | undefined {
    return this.table[fh]
  }

  /** Removes a handle and closes its descriptor; returns it (the caller releases chunks). */
  release (fh: number): Handle | undefined {
    const h = this.table[fh]
    if (h === undefined) return undefined
    this.table[fh] = undefined
    this.free.push(fh)
    this.unregister(h)
    if (h.fd >= 0) fs.closeSync(h.fd)
    return h
  }

  private unregister (h: Handle): void {
    if (h.hostKey === null) return
    const set = this.byHost.get(h.hostKey)
    if (set === undefined) return
    set.delete(h)
    if (set.size === 0) this.byHost.delete(h.hostKey)
  }

  /** Points every read handle on host original `hostKey` at the sibling: `reopen` gives it
   *  a new descriptor or chunk engine (after the old descriptor is closed here). */
  retarget (hostKey: string, reopen: (h: Handle) => void): void {
    const set = this.byHost.get(hostKey)
    if (set === undefined) return
    for (const h of set) {
      if (h.fd >= 0) fs.closeSync(h.fd)
      h.fd = -1
      reopen(h)
      h.layer = 'upper'
      h.hostKey = null
    }
    this.byHost.delete(hostKey)
  }

  /** The pending (unwritten) write handles on host original `hostKey`. */
  pendingOn (hostKey: string): Handle[] {
    return [...(this.byHost.get(hostKey) ?? [])].filter(h => h.layer === 'pending')
  }

  /** Whether a handle opened for writing waits, unwritten, on host original `hostKey`. */
  hasPending (hostKey: string): boolean {
    const set = this.byHost.get(hostKey)
    if (set === undefined) return false
    for (const h of set) if (h.layer === 'pending') return true
    return false
  }

  get openCount (): number {
    return this.table.length - 1 - this.free.length
  }

  closeAll (): void {
    for (let fh = 1; fh < this.table.length; fh++) {
      const h = this.table[fh]
      if (h !== undefined && h.fd >= 0) { try { fs.closeSync(h.fd) } catch { /* closing anyway */ } }
    }
    this.table.length = 1
    this.free.length = 0
    this.byHost.clear()
  }
}
