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
import { lgetxattr } from '../../src/sys/native.js'

type Call = (op: string, ...args: unknown[]) => Promise<number>

function setup (t: ExecutionContext, compress: 'none' | 'lz4'): { host: string, store: string, call: Call, hostHash: () => string } {
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
  return { host, store, call, hostHash }
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
