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
import { dup2 } from '../sys/native.js'

/**
 * The bit of a direct handle's fh (patched fuse-native's Fuse.DIRECT_FH): the fh is then the
 * descriptor itself, and fuse-native serves read and write on it in C with pread/pwrite on the
 * libfuse thread, never calling JS. Direct handles are plain store files and read-only host
 * originals. When a host original is copied up, retarget moves the descriptor number onto
 * the sibling with dup2; a chunked sibling cannot be read with pread, so then the handle is
 * marked forwarded (fuse-native's forwardFd) and its reads come to JS again.
 */
export const DIRECT_FH = 0x40000000

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
  /** A direct handle (see DIRECT_FH): its fh is DIRECT_FH | fd. */
  direct?: boolean
  /** A direct handle whose requests the FUSE layer sends to JS (a pending writer it opened;
   *  see `retarget`). */
  forwarded?: boolean
  /** A chunked sibling opened outside JS (its descriptor is the data file, not the file's
   *  bytes): `chunks` is filled in when JS first reads through it (Overlay.engineOf). */
  engineLater?: boolean
  /** Opened by the FUSE layer (adopted from its events), not by JS. */
  native?: boolean
  /** Counted in the FUSE layer's number of host handles JS opened (`jsHost`). */
  counted?: boolean
}

export class HandleTable {
  /**
   * Brings the table up to date with handles opened and released outside JS (patched
   * fuse-native answers some opens and releases in C and tells us in order, in batches).
   * Called before anything that must see every open handle: a miss on a direct fh, and
   * the lookups of readers by host original (retarget, pending writers).
   */
  sync: () => void = () => {}
  /** Sends the reads of direct handle `fd` to JS (true), or lets C serve them; false if
   *  the descriptor cannot be marked. Set by the FUSE layer (fuse-native's forwardFd). */
  forward: (fd: number, on: boolean) => boolean = () => false
  /** Lets C serve the reads of chunked handle `fh` from `file`'s descriptors, or stops
   *  that (null) before they may close. Set by the FUSE layer (fuse-native's serveChunked). */
  serveChunked: (fh: number, file: ChunkFile | null) => void = () => {}
  /** Tells the FUSE layer that JS holds one more (+1) or one less (-1) handle on a host
   *  original that it opened itself (fuse-native's jsHostHandles): the FUSE layer makes a
   *  sibling itself only while nothing else may read the original. */
  jsHost: (delta: number) => void = () => {}
  private readonly table: Array<Handle | undefined> = [undefined]
  private readonly free: number[] = []
  private readonly byHost = new Map<string, Set<Handle>>()
  private readonly directs = new Map<number, Handle>()

  add (h: Handle): number {
    let fh: number
    if (h.direct === true) {
      fh = DIRECT_FH | h.fd
      this.directs.set(fh, h)
    } else {
      fh = this.free.pop() ?? this.table.length
      this.table[fh] = h
      if (h.chunks !== null) this.serveChunked(fh, h.chunks.file)
    }
    if (h.hostKey !== null) {
      let set = this.byHost.get(h.hostKey)
      if (set === undefined) { set = new Set(); this.byHost.set(h.hostKey, set) }
      set.add(h)
      if (h.native !== true) { h.counted = true; this.jsHost(1) }
    }
    return fh
  }

  get (fh: number): Handle | undefined {
    if ((fh & DIRECT_FH) === 0) return this.table[fh]
    const h = this.directs.get(fh)
    if (h !== undefined) return h
    this.sync()
    return this.directs.get(fh)
  }

  /** Removes a handle and closes its descriptor; returns it (the caller releases chunks). */
  release (fh: number): Handle | undefined {
    const h = this.get(fh)
    if (h === undefined) return undefined
    if ((fh & DIRECT_FH) !== 0) this.directs.delete(fh)
    else {
      if (h.chunks !== null) this.serveChunked(fh, null) // before its descriptors may close
      this.table[fh] = undefined
      this.free.push(fh)
    }
    this.unregister(h)
    if (h.direct === true && h.chunks !== null) this.forward(h.fd, false) // before the number can be reused
    if (h.fd >= 0) fs.closeSync(h.fd)
    return h
  }

  private unregister (h: Handle): void {
    this.uncount(h)
    if (h.hostKey === null) return
    const set = this.byHost.get(h.hostKey)
    if (set === undefined) return
    set.delete(h)
    if (set.size === 0) this.byHost.delete(h.hostKey)
  }

  /** Points every read handle on host original `hostKey` at the sibling: `reopen` gives it
   *  a new descriptor or chunk engine (after the old descriptor is closed here). */
  retarget (hostKey: string, reopen: (h: Handle) => void): void {
    this.sync()
    const set = this.byHost.get(hostKey)
    if (set === undefined) return
    for (const h of set) {
      const old = h.fd
      h.fd = -1
      reopen(h)
      if (h.direct === true) {
        // The kernel holds the descriptor number as the fh: keep the number, change the file.
        if (h.fd >= 0) { dup2(h.fd, old); fs.closeSync(h.fd) }
        h.fd = old
        // A chunked sibling: its reads go to JS (the chunk engine) from now on; the host
        // descriptor just stays open until release. If it cannot be marked, the reader
        // keeps the original, as before.
        if (h.chunks !== null && !this.forward(old, true)) continue
        // A pending writer opened outside JS, now on a plain sibling: C may serve it, as it
        // serves a writer JS opens on one.
        if (h.chunks === null && h.forwarded === true) { this.forward(old, false); h.forwarded = false }
      } else if (old >= 0) {
        fs.closeSync(old)
      }
      h.layer = 'upper'
      h.hostKey = null
      this.uncount(h)
    }
    this.byHost.delete(hostKey)
  }

  private uncount (h: Handle): void {
    if (h.counted !== true) return
    h.counted = false
    this.jsHost(-1)
  }

  /** The pending (unwritten) write handles on host original `hostKey`. */
  pendingOn (hostKey: string): Handle[] {
    this.sync()
    return [...(this.byHost.get(hostKey) ?? [])].filter(h => h.layer === 'pending')
  }

  /** Whether a handle opened for writing waits, unwritten, on host original `hostKey`. */
  hasPending (hostKey: string): boolean {
    this.sync()
    const set = this.byHost.get(hostKey)
    if (set === undefined) return false
    for (const h of set) if (h.layer === 'pending') return true
    return false
  }

  get openCount (): number {
    return this.table.length - 1 - this.free.length + this.directs.size
  }

  closeAll (): void {
    for (let fh = 1; fh < this.table.length; fh++) {
      const h = this.table[fh]
      if (h !== undefined && h.fd >= 0) { try { fs.closeSync(h.fd) } catch { /* closing anyway */ } }
    }
    for (const h of this.directs.values()) { try { fs.closeSync(h.fd) } catch { /* closing anyway */ } }
    this.directs.clear()
    this.table.length = 1
    this.free.length = 0
    this.byHost.clear()
  }
}
