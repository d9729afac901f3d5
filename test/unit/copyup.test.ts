/**
 * Unit tests of the chunked copy-up's hand-over (src/overlay/copyup.ts, chunkreg.ts), through
 * the FUSE handlers of an Overlay without a mount: the engine a copy-up or a create builds
 * is the one the waiting handle uses, so neither opens its chunk map again. Each test checks
 * the merged view (read back through the handlers), the store (the sibling and its map) and
 * the host (unchanged, by content hash). The same paths on real mounts: test/mount/sparse*.
 */
import test, { type ExecutionContext } from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { constants as C } from 'node:fs'
import { createHandlers } from '../../src/fuse/handlers.js'
import { Overlay } from '../../src/overlay/overlay.js'
import { ChunkFile } from '../../src/store/chunks.js'
import { openOrCreateStore, storePaths, SPARSE_MIN_BYTES, XATTR } from '../../src/store/format.js'
import { lgetxattr, lsetxattr } from '../../src/sys/native.js'

type Call = (op: string, ...args: unknown[]) => Promise<number>

function setup (t: ExecutionContext, compress: 'none' | 'lz4'): { host: string, store: string, call: Call, hostHash: () => string, ov: Overlay } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-copyup-'))
  const host = path.join(root, 'host')
  const store = path.join(root, 'store')
  fs.mkdirSync(host)
  fs.writeFileSync(path.join(host, 'big'), crypto.randomBytes(2 * SPARSE_MIN_BYTES))
  const man = openOrCreateStore(store, host, { compress })
  const ov = new Overlay({ host, store, options: man.options, chunkCacheBytes: 1 << 20 })
  t.teardown(() => { ov.close(); fs.rmSync(root, { recursive: true, force: true }) })
  const h = createHandlers(ov, () => ({ uid: 0, gid: 0, pid: process.pid }))
  const call: Call = async (op, ...args) => await new Promise((resolve) => {
    h[op]!(...args, (err: number, value?: unknown) => { resolve(typeof value === 'number' ? value : err) })
  })
  const hostHash = (): string => {
    const hash = crypto.createHash('sha256')
    for (const name of fs.readdirSync(host).sort()) hash.update(name).update(fs.readFileSync(path.join(host, name)))
    return hash.digest('hex')
  }
  return { host, store, call, hostHash, ov }
}

/** Counts ChunkFile.open calls while `fn` runs. */
async function countOpens (fn: () => Promise<void>): Promise<number> {
  const orig = ChunkFile.open
  let n = 0
  ChunkFile.open = function (...args: Parameters<typeof ChunkFile.open>) { n++; return orig.apply(ChunkFile, args) }
  try { await fn() } finally { ChunkFile.open = orig }
  return n
}

for (const compress of ['none', 'lz4'] as const) {
  test(`${compress} store: a chunked copy-up hands its engine to the writing handle (no map reopened); view, store and host checked`, async (t) => {
    const { host, store, call, hostHash } = setup(t, compress)
    const before = hostHash()
    const original = fs.readFileSync(path.join(host, 'big'))
    const off = SPARSE_MIN_BYTES + 12345
    const opens = await countOpens(async () => {
      const w = await call('open', '/big', C.O_WRONLY)
      t.true(w >= 0)
      t.is(await call('write', '/big', w, Buffer.from('x'), 1, off), 1)
      t.is(await call('release', '/big', w), 0)
    })
    t.is(opens, 0, 'the copy-up\'s engine was reopened')
    // The view: the byte, and the host's bytes around it.
    const r = await call('open', '/big', C.O_RDONLY)
    const got = Buffer.alloc(3)
    t.is(await call('read', '/big', r, got, 3, off - 1), 3)
    await call('release', '/big', r)
    t.deepEqual([...got], [original[off - 1], 0x78, original[off + 1]])
    // The store: a chunked sibling with its map.
    const up = path.join(storePaths(store).upper, 'big')
    const id = lgetxattr(up, XATTR.chunks)
    t.not(id, null)
    t.true(fs.existsSync(path.join(storePaths(store).maps, (id as Buffer).toString('utf8'))))
    // The host: unchanged.
    t.is(hostHash(), before)
  })
}

test('lz4 store: a file created in the sandbox hands its new engine to its handle (no map reopened)', async (t) => {
  const { store, call, hostHash } = setup(t, 'lz4')
  const before = hostHash()
  const data = Buffer.from('made in the sandbox\n'.repeat(100))
  const opens = await countOpens(async () => {
    const fh = await call('create', '/new', 0o644, C.O_WRONLY | C.O_CREAT)
    t.true(fh >= 0)
    t.is(await call('write', '/new', fh, data, data.length, 0), data.length)
    t.is(await call('release', '/new', fh), 0)
  })
  t.is(opens, 0, 'the new file\'s engine was reopened')
  const r = await call('open', '/new', C.O_RDONLY)
  const got = Buffer.alloc(data.length)
  t.is(await call('read', '/new', r, got, data.length, 0), data.length)
  await call('release', '/new', r)
  t.true(got.equals(data))
  t.not(lgetxattr(path.join(storePaths(store).upper, 'new'), XATTR.chunks), null)
  t.is(hostHash(), before)
})

/** Makes `up` a sibling of host file `hostFile` that holds its own bytes (`bytes`), as a
 *  sibling the FUSE thread made (and wrote) would be, seen from JS's copy-up. */
function theirSibling (up: string, hostFile: string, bytes: Buffer): void {
  const hst = fs.statSync(hostFile, { bigint: true })
  fs.writeFileSync(up, bytes)
  const origin = { path: path.basename(hostFile), dev: Number(hst.dev), ino: Number(hst.ino), size: Number(hst.size), mtimeNs: String(hst.mtimeNs), data: 'store' }
  lsetxattr(up, XATTR.origin, Buffer.from(JSON.stringify(origin)), 0)
}

test('a copy-up whose name gets a sibling meanwhile (the FUSE thread makes one at a first write) commits nothing over it: the operation goes on with that sibling', async (t) => {
  const { host, store, call, hostHash, ov } = setup(t, 'none')
  fs.copyFileSync(path.join(host, 'big'), path.join(host, 'big2'))
  const before = hostHash()
  const sp = storePaths(store)
  const theirs = (name: string): Buffer => { const b = fs.readFileSync(path.join(host, name)); b[5] = 0x21; return b }
  // chmod: the metadata-only sibling JS prepares loses to the one that appeared.
  const cu = ov.copyup
  const copyMeta = cu.copyMeta.bind(cu)
  let injected = 0
  cu.copyMeta = (...args: Parameters<typeof cu.copyMeta>) => {
    copyMeta(...args)
    if (injected++ === 0) theirSibling(path.join(sp.upper, 'big'), path.join(host, 'big'), theirs('big'))
  }
  t.is(await call('chmod', '/big', 0o600), 0)
  t.true(fs.readFileSync(path.join(sp.upper, 'big')).equals(theirs('big')), 'the sibling that was there first is kept')
  t.is(fs.statSync(path.join(sp.upper, 'big')).mode & 0o777, 0o600, 'and the chmod applies to it')
  t.deepEqual(fs.readdirSync(sp.work), [], 'nothing left in work/')
  const r = await call('open', '/big', C.O_RDONLY)
  const got = Buffer.alloc(1)
  t.is(await call('read', '/big', r, got, 1, 5), 1)
  await call('release', '/big', r)
  t.is(got[0], 0x21, 'the view shows that sibling')
  // A chunked copy-up at a first write: its data file and map are dropped, the write goes
  // into the sibling that appeared.
  cu.copyMeta = copyMeta
  const setChunks = ov.inodes.setChunks.bind(ov.inodes)
  ov.inodes.setChunks = (...args: Parameters<typeof ov.inodes.setChunks>) => {
    setChunks(...args)
    theirSibling(path.join(sp.upper, 'big2'), path.join(host, 'big2'), theirs('big2'))
  }
  const w = await call('open', '/big2', C.O_WRONLY)
  t.is(await call('write', '/big2', w, Buffer.from('y'), 1, 7), 1)
  t.is(await call('release', '/big2', w), 0)
  ov.inodes.setChunks = setChunks
  const want = theirs('big2')
  want[7] = 0x79
  t.true(fs.readFileSync(path.join(sp.upper, 'big2')).equals(want), 'the write went into the sibling that was there first')
  t.deepEqual(fs.readdirSync(sp.maps), [], 'the chunk map made for the lost copy-up is gone')
  t.deepEqual(fs.readdirSync(sp.work), [], 'nothing left in work/')
  t.is(hostHash(), before)
})
