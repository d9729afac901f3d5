/**
 * Small additions to sandbox.ts for the mount and POSIX tests (sandbox.ts stays as it is).
 *
 * - `mtest` / `mtestFailing`: ava's test (or test.failing for known daemon bugs), skipped when
 *   /dev/fuse is missing.
 * - `FIXTURE`: the host tree most mount tests start from.
 * - `hostUnchanged(t, m)`: the host tree hashes as it did before the mount.
 * - `walk(dir)`: every path below a directory (relative, sorted); `fuseHidden(dir)` the
 *   `.fuse_hidden*` among them.
 * - `asNobody(cmd)`: runs a shell command as uid/gid 65534 with no supplementary groups.
 * - `useMountPrepared(t, tree, prep)`: a mount whose host tree `prep` may change after
 *   makeTree (xattrs, modes of directories) before the daemon starts.
 * - `writtenKind(size)`, `allocated(p)`: what a data copy-up of a file of that size stores.
 */
import test, { type ExecutionContext } from 'ava'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { SPARSE_MIN_BYTES } from '../../src/store/format.js'
import { fuseAvailable, hashTree, makeTree, sh, startMount, type Mount, type TreeNode } from './sandbox.js'

type Impl = (t: ExecutionContext) => Promise<void> | void

export const mtest: (title: string, impl: Impl) => void = fuseAvailable
  ? (title, impl) => test(title, impl)
  : (title, impl) => test.skip(title, impl)

/** Known daemon bugs. SFS_STRICT=1 runs them as ordinary tests (to see their failures, or
 *  to check a fix: a fixed bug makes test.failing fail, so flip it to mtest then). */
export const mtestFailing: (title: string, impl: Impl) => void = !fuseAvailable
  ? (title, impl) => test.skip(title, impl)
  : process.env.SFS_STRICT === '1'
    ? (title, impl) => test(title, impl)
    : (title, impl) => test.failing(title, impl)

/** Deterministic bytes (not all equal, so misplaced blocks are noticed). */
export function pattern (size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size)
  let x = seed >>> 0
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    b[i] = x >>> 24
  }
  return b
}

export function manyFiles (n: number, prefix = 'f'): { [name: string]: TreeNode } {
  const o: { [name: string]: TreeNode } = {}
  for (let i = 0; i < n; i++) o[`${prefix}${String(i).padStart(3, '0')}`] = `content of ${prefix}${i}\n`
  return o
}

export function fixture (): { [name: string]: TreeNode } {
  return {
    'a.txt': 'alpha\n',
    'b.txt': 'bravo\n',
    'big.bin': pattern(1 << 20, 7),
    'link-to-a': { $symlink: 'a.txt' },
    dangling: { $symlink: 'nowhere' },
    secret: { $mode: 0o600, $content: 'top secret\n' },
    script: { $mode: 0o755, $content: '#!/bin/sh\necho hi\n' },
    dir: { 'one.txt': '1\n', 'two.txt': '2\n', sub: { 'deep.txt': 'deep\n' } },
    empty: {},
    many: { ...manyFiles(200), nested: { 'inner.txt': 'inner\n', deeper: { 'leaf.txt': 'leaf\n' } } }
  }
}

export function hostUnchanged (t: ExecutionContext, m: Mount): void {
  t.is(hashTree(m.host), m.hostHash, 'the host tree must not change')
}

/** Every path below `dir`, relative and sorted (does not follow symlinks). */
export function walk (dir: string): string[] {
  const out: string[] = []
  const rec = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel === '' ? e.name : rel + '/' + e.name
      out.push(r)
      if (e.isDirectory()) rec(r)
    }
  }
  rec('')
  return out.sort()
}

export function fuseHidden (dir: string): string[] {
  return walk(dir).filter(p => path.basename(p).startsWith('.fuse_hidden'))
}

export function sorted (names: string[]): string[] {
  return [...names].sort()
}

export function asNobody (cmd: string, opts: { cwd?: string } = {}): { status: number | null, stdout: string, stderr: string } {
  const q = cmd.replace(/'/g, `'\\''`)
  return sh(`setpriv --reuid=65534 --regid=65534 --clear-groups bash -c '${q}'`, opts)
}

/** Shell-quotes one argument. */
export function q (s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

export async function useMountPrepared (t: ExecutionContext, tree: { [name: string]: TreeNode }, prep: (host: string) => void, args: string[] = []): Promise<Mount> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-test-'))
  const dirs = { root, host: path.join(root, 'host'), mnt: path.join(root, 'mnt'), store: path.join(root, 'store') }
  fs.mkdirSync(dirs.mnt)
  makeTree(dirs.host, tree)
  prep(dirs.host)
  let m: Mount
  try {
    m = await startMount({ dirs, args })
  } catch (err) {
    fs.rmSync(root, { recursive: true, force: true })
    throw err
  }
  t.teardown(async () => {
    await m.cleanup()
    fs.rmSync(root, { recursive: true, force: true })
  })
  return m
}

/** lstat with bigint fields (nanosecond times). */
export function lst (p: string): fs.BigIntStats {
  return fs.lstatSync(p, { bigint: true })
}

/**
 * The origin `data` a written host file of `size` bytes gets (default store options):
 * small files are copied whole ("store"), files of SPARSE_MIN_BYTES or more become chunked
 * siblings ("chunks": only written chunks are stored; STORE-FORMAT.md).
 */
export function writtenKind (size: number): 'store' | 'chunks' {
  return size >= SPARSE_MIN_BYTES ? 'chunks' : 'store'
}

/** Bytes a store file really occupies (st_blocks), to tell a sparse sibling from a full copy. */
export function allocated (p: string): number {
  return fs.lstatSync(p).blocks * 512
}

/**
 * A reader held open across a write, by a separate process (python3): opens `p` O_DIRECT
 * for reading (no page cache: every read reaches the daemon, so it shows which file the
 * descriptor points at), prints the first `show` bytes it reads (all by default), writes
 * `write` at offset 0 through a second descriptor, reads and prints again through the
 * first; with `fstat`, then prints the reader's st_size; with `listFirst`, lists the
 * directory before opening (so that it is served from the layer directly).
 */
export function readerAcrossWrite (p: string, o: { write?: string, show?: number, fstat?: boolean, listFirst?: boolean } = {}): { status: number | null, stdout: string, stderr: string } {
  const cut = o.show !== undefined ? String(o.show) : 'n'
  const py = [
    'import os, mmap',
    `p = ${JSON.stringify(p)}`,
    o.listFirst === true ? 'os.listdir(os.path.dirname(p)); os.listdir(os.path.dirname(p))' : '',
    'r = os.open(p, os.O_RDONLY | os.O_DIRECT)',
    'buf = mmap.mmap(-1, 4096)',
    `n = os.preadv(r, [buf], 0); print(bytes(buf[:${cut}]).decode(), end="")`,
    'w = os.open(p, os.O_WRONLY)',
    `os.pwrite(w, ${JSON.stringify(o.write ?? 'NEW')}.encode(), 0); os.close(w)`,
    `n = os.preadv(r, [buf], 0); print(bytes(buf[:${cut}]).decode(), end="")`,
    o.fstat === true ? 'print(os.fstat(r).st_size)' : '',
    'os.close(r)'
  ].filter(l => l !== '').join('\n')
  return sh(`python3 -c '${py}'`)
}
