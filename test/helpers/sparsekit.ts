/**
 * Helpers for the chunked-sibling tests (sparse, sparse-model, corruption, drift,
 * sparse-crash). sandbox.ts, progkit.ts and mountkit.ts stay as they are.
 *
 * - `STORE_CONFIGS`: the two store kinds every test runs on (plain, --compress lz4).
 * - `du(p)`: bytes a file or tree really occupies (st_blocks, recursively), like `du -sb --apparent-size=no`.
 * - `chunksId(p)`: the user.siblingfs.chunks xattr of an upper file (map id), or null.
 * - `readMap(store, id)`: the map header and stored entries, parsed independently of
 *   src/store/chunks.ts from the layout in STORE-FORMAT.md.
 * - `slotOffset(c, slot, cs)`: where chunk c's slot lives in the data file.
 * - `pwrite`, `pread`, `preadErr`: one positioned I/O through a fresh descriptor.
 * - `fsck(store, repair)`, `status(host, store)`: the CLI, with parsed --json output.
 * - `storeContentHash(store)`: a hash of upper/, maps/, work/ and the manifest (not of the
 *   store directory's own times, which a refused mount's lock file touches).
 * - `textTree(seed, total)`: a compressible tree (JSON, logs, source-like text).
 * - `randomPool(seed, n)`: seeded random bytes, fast.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { lgetxattr } from '../../src/sys/native.js'
import { hashTree } from './sandbox.js'
import { cli, mulberry32, type CliResult } from './progkit.js'

export interface StoreConfig { name: string, args: string[], compress: boolean }
export const STORE_CONFIGS: StoreConfig[] = [
  { name: 'plain store', args: [], compress: false },
  { name: 'lz4 store', args: ['--compress', 'lz4'], compress: true }
]

export const KiB = 1024
export const MiB = 1 << 20
export const CS = 65536

export function du (p: string): number {
  const st = fs.lstatSync(p)
  let n = st.blocks * 512
  if (st.isDirectory()) for (const name of fs.readdirSync(p)) n += du(path.join(p, name))
  return n
}

export function chunksId (p: string): string | null {
  return lgetxattr(p, 'user.siblingfs.chunks')?.toString('utf8') ?? null
}

export interface MapEntry { c: number, slot: number, flags: number, storedLen: number, rawLen: number, crc: number }
export interface MapInfo {
  path: string
  magic: string
  version: number
  flags: number
  chunkSize: number
  size: number
  hostLimit: number
  /** Stored (non-absent) entries of chunks below the size. */
  entries: MapEntry[]
}

export function readMap (store: string, id: string): MapInfo {
  const p = path.join(store, 'maps', id)
  const b = fs.readFileSync(p)
  const u64 = (o: number): number => b.readUInt32LE(o) + b.readUInt32LE(o + 4) * 0x100000000
  const chunkSize = b.readUInt32LE(12)
  const size = u64(16)
  const entries: MapEntry[] = []
  const n = Math.ceil(size / chunkSize)
  for (let c = 0; c < n; c++) {
    const e = 64 + 16 * c
    if (e + 16 > b.length) break
    const slot = b[e]
    if (slot === 0 && b.readUInt32LE(e + 4) === 0) continue
    entries.push({ c, slot, flags: b[e + 1], storedLen: b.readUInt32LE(e + 4), rawLen: b.readUInt32LE(e + 8), crc: b.readUInt32LE(e + 12) })
  }
  return { path: p, magic: b.toString('latin1', 0, 8), version: b.readUInt16LE(8), flags: b.readUInt16LE(10), chunkSize, size, hostLimit: u64(24), entries }
}

export function slotOffset (c: number, slot: number, cs: number): number {
  return (2 * c + slot - 1) * cs
}

export function pwrite (p: string, at: number, data: Buffer | string, sync = false): void {
  const b = typeof data === 'string' ? Buffer.from(data) : data
  const fd = fs.openSync(p, 'r+')
  try {
    let done = 0
    while (done < b.length) done += fs.writeSync(fd, b, done, b.length - done, at + done)
    if (sync) fs.fsyncSync(fd)
  } finally { fs.closeSync(fd) }
}

/** Up to `len` bytes at `pos` of open descriptor `fd` (short only at end of file). */
export function readFull (fd: number, len: number, pos: number): Buffer {
  const b = Buffer.alloc(len)
  let done = 0
  while (done < len) {
    const n = fs.readSync(fd, b, done, len - done, pos + done)
    if (n === 0) break
    done += n
  }
  return b.subarray(0, done)
}

export function pread (p: string, at: number, len: number): Buffer {
  const fd = fs.openSync(p, 'r')
  try { return readFull(fd, len, at) } finally { fs.closeSync(fd) }
}

/** The errno name of a positioned read (or 'OK' with the bytes). */
export function preadErr (p: string, at: number, len: number): { err: string, data: Buffer | null } {
  try {
    return { err: 'OK', data: pread(p, at, len) }
  } catch (e) {
    return { err: (e as NodeJS.ErrnoException).code ?? String(e), data: null }
  }
}

export interface FsckFinding { severity: 'error' | 'warning' | 'fixed', path: string, message: string }
export interface FsckJson { store: string, entries: number, chunkedFiles: number, findings: FsckFinding[] }

export function fsck (store: string, repair = false): CliResult & { json: FsckJson | null } {
  const r = cli(['fsck', store, '--json', ...(repair ? ['--repair'] : [])])
  let json: FsckJson | null = null
  try { json = JSON.parse(r.stdout) as FsckJson } catch { /* not JSON: an error */ }
  return { ...r, json }
}

export function fsckText (store: string, repair = false): CliResult {
  return cli(['fsck', store, ...(repair ? ['--repair'] : [])])
}

export function storeContentHash (store: string): string {
  const h = crypto.createHash('sha256')
  for (const d of ['upper', 'maps', 'work']) {
    const p = path.join(store, d)
    h.update(d + ':' + (fs.existsSync(p) ? hashTree(p) : '-') + '\n')
  }
  h.update(fs.readFileSync(path.join(store, 'siblingfs.json')))
  h.update(fs.readdirSync(store).filter(n => n !== 'lock').sort().join(','))
  return h.digest('hex')
}

export function randomPool (seed: number, n: number): Buffer {
  const rnd = mulberry32(seed)
  const b = Buffer.alloc(n)
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE(Math.floor(rnd() * 4294967296), i)
  for (let i = n & ~3; i < n; i++) b[i] = Math.floor(rnd() * 256)
  return b
}

/** A pattern in which every 4 KiB block is different (fast for tens of MiB). */
export function blockPattern (size: number, seed = 1): Buffer {
  const unit = randomPool(seed, 1 << 16)
  const b = Buffer.alloc(size)
  for (let o = 0; o < size; o += unit.length) unit.copy(b, o, 0, Math.min(unit.length, size - o))
  for (let o = 0; o + 8 <= size; o += 4096) { b.writeUInt32LE(o >>> 0, o); b.writeUInt32LE(seed + Math.floor(o / 4096), o + 4) }
  return b
}

const WORDS = ['request', 'handler', 'error', 'timeout', 'user', 'session', 'value', 'config', 'index', 'buffer',
  'return', 'const', 'function', 'struct', 'status', 'server', 'client', 'payload', 'cache', 'token']

/** Compressible files of 10 KiB - 1 MiB, about `total` bytes: {relative path: content}. */
export function textTree (seed: number, total: number): Map<string, Buffer> {
  const rnd = mulberry32(seed)
  const pick = <T>(a: T[]): T => a[Math.floor(rnd() * a.length)]
  const out = new Map<string, Buffer>()
  let sum = 0
  let i = 0
  while (sum < total) {
    const size = Math.floor(10 * KiB + Math.pow(rnd(), 3) * (MiB - 10 * KiB))
    const kind = i % 3
    const parts: string[] = []
    let len = 0
    let line = 0
    while (len < size) {
      let s: string
      if (kind === 0) {
        s = JSON.stringify({ id: line, [pick(WORDS)]: pick(WORDS) + String(Math.floor(rnd() * 1000)), ok: rnd() < 0.9, tags: [pick(WORDS), pick(WORDS)], ts: 1700000000 + line * 7 }) + ',\n'
      } else if (kind === 1) {
        s = `2024-05-${String(1 + (line % 28)).padStart(2, '0')}T12:${String(line % 60).padStart(2, '0')}:00Z ${pick(['INFO', 'WARN', 'DEBUG', 'ERROR'])} ${pick(WORDS)}: ${pick(WORDS)} ${pick(WORDS)} took ${Math.floor(rnd() * 500)}ms (pid ${1000 + (line % 7)})\n`
      } else {
        s = `  ${pick(['const', 'let', 'return', 'if (', 'for (const'])} ${pick(WORDS)}${Math.floor(rnd() * 10)} = ${pick(WORDS)}.${pick(WORDS)}(${pick(WORDS)}, ${Math.floor(rnd() * 100)})\n`
      }
      parts.push(s)
      len += s.length
      line++
    }
    const ext = ['json', 'log', 'ts'][kind]
    const rel = `d${i % 4}/${kind === 2 ? 'src/' : ''}file${i}.${ext}`
    const b = Buffer.from(parts.join('')).subarray(0, size)
    out.set(rel, b)
    sum += b.length
    i++
  }
  return out
}

export function writeTree (dir: string, files: Map<string, Buffer>): void {
  for (const [rel, b] of files) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
    fs.writeFileSync(path.join(dir, rel), b)
  }
}

/** The first offset where a and b differ (or the shorter length), -1 when equal. */
export function firstDiff (a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i += 4096) {
    const e = Math.min(n, i + 4096)
    if (!a.subarray(i, e).equals(b.subarray(i, e))) {
      for (let j = i; j < e; j++) if (a[j] !== b[j]) return j
    }
  }
  return a.length === b.length ? -1 : n
}

/** A short description of how `got` differs from `want`. */
export function describeDiff (got: Buffer, want: Buffer): string {
  const d = firstDiff(got, want)
  if (d < 0) return 'equal'
  return `length ${got.length} vs expected ${want.length}; first difference at ${d} (chunk ${Math.floor(d / CS)} of 64 KiB): got ${got.subarray(d, d + 8).toString('hex')} expected ${want.subarray(d, d + 8).toString('hex')}`
}

/**
 * Waits (up to `ms`) until a line of the daemon's stderr satisfies `pred`; returns it or null.
 * A daemon's stderr reaches this process only through the event loop, and a fixed sleep can
 * resolve before the pipe is read when another test blocks the loop: poll instead.
 */
export async function waitForLine (stderr: () => string, pred: (line: string) => boolean, ms = 5000): Promise<string | null> {
  const deadline = Date.now() + ms
  for (;;) {
    const hit = stderr().split('\n').find(pred)
    if (hit !== undefined) return hit
    if (Date.now() > deadline) {
      // Other tests in this process may have blocked the event loop (spawnSync, big sync
      // reads) past the deadline while the daemon's output sat unread in the pipe: give the
      // pending I/O callbacks two turns before giving up.
      for (let i = 0; i < 2; i++) await new Promise(resolve => setImmediate(resolve))
      await new Promise(resolve => setTimeout(resolve, 100))
      return stderr().split('\n').find(pred) ?? null
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}
