/**
 * Acceptance tests of sparse, optionally lz4-compressed stores (STORE-FORMAT.md, "Chunked
 * siblings"), run on a plain store and on a `--compress lz4` store.
 *
 * Every test looks at three places: the merged view (bytes and sizes), the store (origin
 * data "chunks"/"store", the chunk map, allocated bytes) and the host (unchanged).
 * Measured numbers (store growth of a 1-byte write, compression ratio of a text tree) are
 * printed with t.log (`npx ava --verbose` shows them).
 */
import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import type { ExecutionContext } from 'ava'
import { hashTree, sh, startMount, storeInfo, useMount, type Mount } from '../helpers/sandbox.js'
import { hostUnchanged, lst, mtest, q } from '../helpers/mountkit.js'
import { cliAsync, forceUnmountBelow, freshDirs } from '../helpers/progkit.js'
import {
  CS, KiB, MiB, STORE_CONFIGS, blockPattern, chunksId, describeDiff, du, pread, pwrite, readMap, storeContentHash,
  textTree, writeTree
} from '../helpers/sparsekit.js'

/** Asserts that the mount shows exactly `want` at `rel` (size and every byte). */
function viewIs (t: ExecutionContext, m: Mount, rel: string, want: Buffer, what: string): void {
  const got = fs.readFileSync(m.m(rel))
  t.is(got.length, want.length, `${what}: length of ${rel}`)
  t.true(got.equals(want), `${what}: bytes of ${rel}: ${describeDiff(got, want)}`)
  t.is(lst(m.m(rel)).size, BigInt(want.length), `${what}: st_size of ${rel}`)
}

/** The sibling at `rel` is a chunked sibling whose map says `size`. */
function chunkedInStore (t: ExecutionContext, m: Mount, rel: string, size: number): ReturnType<typeof readMap> | null {
  const info = storeInfo(m.u(rel))
  t.is(info.origin?.data, 'chunks', `${rel}: origin.data in the store`)
  const id = chunksId(m.u(rel))
  t.truthy(id, `${rel}: user.siblingfs.chunks names a map`)
  if (id === null) return null
  const map = readMap(m.store, id)
  t.is(map.magic, 'SFSCHNK1')
  t.is(map.size, size, `${rel}: logical size in the map`)
  return map
}

for (const cfg of STORE_CONFIGS) {
  const title = (s: string): string => `${cfg.name}: ${s}`

  mtest(title('a 1-byte write into a 64 MiB host file stores one chunk; every other byte is the host\'s'), async (t) => {
    const SIZE = 64 * MiB
    const base = blockPattern(SIZE, 64)
    const m = await useMount(t, { host: { 'huge.bin': base }, args: cfg.args })
    const before = du(m.store)
    const at = 32 * MiB + 12345
    const fd = fs.openSync(m.m('huge.bin'), 'r+')
    fs.writeSync(fd, Buffer.from([base[at] ^ 0xff]), 0, 1, at)
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    const growth = du(m.store) - before
    t.log(`${cfg.name}: store growth for a 1-byte write into a 64 MiB file: ${growth} bytes (${(growth / KiB).toFixed(0)} KiB); data file ${du(m.u('huge.bin'))} bytes allocated, st_size ${fs.statSync(m.u('huge.bin')).size}`)
    t.true(growth < 256 * KiB, `store grew by ${growth} bytes`)
    const want = Buffer.from(base)
    want[at] ^= 0xff
    viewIs(t, m, 'huge.bin', want, 'after the write')
    const map = chunkedInStore(t, m, 'huge.bin', SIZE)
    t.deepEqual(map?.entries.map(e => e.c), [Math.floor(at / CS)], 'exactly the written chunk is stored')
    t.is(map?.hostLimit, SIZE)
    hostUnchanged(t, m)
    // and after a remount
    await m.stop()
    const m2 = await startMount({ dirs: m, args: cfg.args })
    t.teardown(m2.cleanup)
    viewIs(t, m2, 'huge.bin', want, 'after a remount')
    t.is(hashTree(m.host), m.hostHash, 'the host tree must not change')
  })

  mtest(title('overwrite, append, truncate down then up (zeros), writes across chunk boundaries'), async (t) => {
    const SIZE = 3 * MiB + 4321
    const base = blockPattern(SIZE, 3)
    const m = await useMount(t, { host: { 'f.bin': base, 'g.bin': blockPattern(SIZE, 4) }, args: cfg.args })
    let model = Buffer.from(base)
    const write = (at: number, data: Buffer): void => {
      pwrite(m.m('f.bin'), at, data)
      const end = Math.max(model.length, at + data.length)
      if (end > model.length) model = Buffer.concat([model, Buffer.alloc(end - model.length)])
      data.copy(model, at)
    }
    const resize = (n: number): void => {
      model = n <= model.length ? Buffer.from(model.subarray(0, n)) : Buffer.concat([model, Buffer.alloc(n - model.length)])
    }
    write(100, Buffer.from('overwrite in chunk 0'))
    viewIs(t, m, 'f.bin', model, 'overwrite')
    write(3 * CS - 7, Buffer.from('across the 3rd chunk boundary'))
    write(5 * CS, crypto.randomBytes(CS)) // exactly one whole chunk
    write(7 * CS + 1, crypto.randomBytes(3 * CS)) // three boundaries, unaligned both ends
    viewIs(t, m, 'f.bin', model, 'writes across chunk boundaries')
    // append through O_APPEND
    const app = crypto.randomBytes(70000)
    fs.appendFileSync(m.m('f.bin'), app)
    model = Buffer.concat([model, app])
    viewIs(t, m, 'f.bin', model, 'append')
    // truncate down into the middle of a chunk, then extend again: zeros, not the host's bytes
    fs.truncateSync(m.m('f.bin'), MiB + 777)
    resize(MiB + 777)
    viewIs(t, m, 'f.bin', model, 'truncate down')
    fs.truncateSync(m.m('f.bin'), 2 * MiB + 5)
    resize(2 * MiB + 5)
    viewIs(t, m, 'f.bin', model, 'truncate up')
    t.true(model.subarray(MiB + 777).equals(Buffer.alloc(MiB - 772)), 'model sanity: the extension is zeros')
    // ftruncate down, then a write past the end leaves a hole of zeros
    const fd = fs.openSync(m.m('f.bin'), 'r+')
    fs.ftruncateSync(fd, 100000)
    fs.writeSync(fd, Buffer.from('Z'), 0, 1, 400000)
    fs.closeSync(fd)
    resize(100000)
    resize(400001)
    model[400000] = 0x5a
    viewIs(t, m, 'f.bin', model, 'ftruncate down, write past the end')
    // extend by writing far past the end over chunks that held host data before the cut
    write(3 * MiB, Buffer.from('far'))
    viewIs(t, m, 'f.bin', model, 'write far past the end')
    const map = chunkedInStore(t, m, 'f.bin', model.length)
    t.true((map?.hostLimit ?? Infinity) <= 100000, `hostLimit ${map?.hostLimit} is cut to the smallest size`)
    viewIs(t, m, 'g.bin', blockPattern(SIZE, 4), 'an untouched neighbour')
    hostUnchanged(t, m)
    await m.stop()
    const m2 = await startMount({ dirs: m, args: cfg.args })
    t.teardown(m2.cleanup)
    viewIs(t, m2, 'f.bin', model, 'after a remount')
    t.is(hashTree(m.host), m.hostHash)
  })

  mtest(title('space is given back: a chunk rewritten 200 times, a shrink, an unlink'), async (t) => {
    const SIZE = 8 * MiB
    const base = blockPattern(SIZE, 12)
    const m = await useMount(t, { host: { 'f.bin': base, 'g.bin': blockPattern(SIZE, 13) }, args: cfg.args })
    const before = du(m.store)
    const model = Buffer.from(base)
    const fd = fs.openSync(m.m('f.bin'), 'r+')
    for (let i = 0; i < 200; i++) {
      const b = crypto.randomBytes(1 + (i * 7919) % 5000)
      const at = 5 * CS + (i * 104729) % (CS - b.length) // always within chunk 5
      fs.writeSync(fd, b, 0, b.length, at)
      b.copy(model, at)
    }
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    const rewrites = du(m.store) - before
    t.log(`${cfg.name}: store growth after 200 partial rewrites of one chunk: ${rewrites} bytes`)
    t.true(rewrites < 256 * KiB, `200 rewrites of one chunk must not pile up slots: ${rewrites} bytes`)
    viewIs(t, m, 'f.bin', model, 'after the rewrites')
    // write 4 MiB, then cut the file to 100 KiB: the chunks past the cut are given back
    const big = crypto.randomBytes(4 * MiB)
    pwrite(m.m('g.bin'), 0, big, true)
    const written = du(m.store)
    fs.truncateSync(m.m('g.bin'), 100 * KiB)
    const cut = du(m.store)
    t.log(`${cfg.name}: 4 MiB written: ${written - before} bytes; after a cut to 100 KiB: ${cut - before} bytes`)
    t.true(written - cut > 3.5 * MiB, `a shrink frees the chunks past the end (${written} -> ${cut})`)
    viewIs(t, m, 'g.bin', big.subarray(0, 100 * KiB), 'after the cut')
    const mapsBefore = fs.readdirSync(path.join(m.store, 'maps')).length
    fs.rmSync(m.m('g.bin'))
    t.is(fs.readdirSync(path.join(m.store, 'maps')).length, mapsBefore - 1, 'an unlinked chunked file\'s map is deleted')
    t.is(storeInfo(m.u('g.bin')).whiteout, true)
    hostUnchanged(t, m)
  })

  mtest(title('a host file with holes reads identically, before and after a write'), async (t) => {
    const dirs = freshDirs(t, {})
    const f = path.join(dirs.host, 'holes.bin')
    const r = sh(`truncate -s 8M ${q(f)} && for o in 0 1048575 3145733 6291456 8388607; do printf x | dd of=${q(f)} bs=1 seek=$o conv=notrunc status=none; done`)
    t.is(r.status, 0, r.stderr)
    t.true(du(f) < 64 * KiB, 'the host file is sparse')
    const hostBytes = fs.readFileSync(f)
    const m = await startMount({ dirs, args: cfg.args })
    t.teardown(m.cleanup)
    viewIs(t, m, 'holes.bin', hostBytes, 'before any write')
    const want = Buffer.from(hostBytes)
    pwrite(m.m('holes.bin'), 5 * MiB + 3, 'y')
    want[5 * MiB + 3] = 0x79
    viewIs(t, m, 'holes.bin', want, 'after a 1-byte write into a hole')
    const map = chunkedInStore(t, m, 'holes.bin', 8 * MiB)
    t.deepEqual(map?.entries.map(e => e.c), [Math.floor((5 * MiB + 3) / CS)])
    t.true(du(m.u('holes.bin')) <= CS + 8 * KiB, `data file allocates ${du(m.u('holes.bin'))} bytes`)
    hostUnchanged(t, m)
  })

  mtest(title('--chunk-size 4096: writes, map, store growth, remount with and without the flag'), async (t) => {
    const SIZE = 2 * MiB + 99
    const base = blockPattern(SIZE, 5)
    const args = [...cfg.args, '--chunk-size', '4096']
    const m = await useMount(t, { host: { 'f.bin': base }, args })
    const before = du(m.store)
    pwrite(m.m('f.bin'), MiB + 10, Buffer.from([1]), true)
    const growth = du(m.store) - before
    t.log(`${cfg.name}, 4 KiB chunks: store growth for a 1-byte write: ${growth} bytes`)
    t.true(growth <= 16 * KiB, `store grew by ${growth} bytes`)
    const model = Buffer.from(base)
    model[MiB + 10] = 1
    const span = crypto.randomBytes(3 * 4096 + 2)
    pwrite(m.m('f.bin'), 4096 * 9 - 1, span) // crosses four 4 KiB boundaries
    span.copy(model, 4096 * 9 - 1)
    viewIs(t, m, 'f.bin', model, '4 KiB chunks')
    const map = chunkedInStore(t, m, 'f.bin', SIZE)
    t.is(map?.chunkSize, 4096)
    t.deepEqual(map?.entries.map(e => e.c), [8, 9, 10, 11, 12, Math.floor((MiB + 10) / 4096)])
    hostUnchanged(t, m)
    await m.stop()
    for (const again of [args, cfg.args]) {
      const m2 = await startMount({ dirs: m, args: again })
      t.teardown(m2.cleanup)
      viewIs(t, m2, 'f.bin', model, `remounted with [${again.join(' ')}]`)
      await m2.stop()
    }
    t.is(hashTree(m.host), m.hostHash)
  })

  mtest(title('mounting the store with another --compress or --chunk-size is refused (exit 64) and changes nothing'), async (t) => {
    const m = await useMount(t, { host: { 'big.bin': blockPattern(2 * MiB, 6), 'a.txt': 'a\n' }, args: cfg.args })
    pwrite(m.m('big.bin'), 70000, 'changed')
    fs.writeFileSync(m.m('new.txt'), 'new\n')
    await m.stop()
    const storeHash = storeContentHash(m.store)
    const manifest = fs.readFileSync(path.join(m.store, 'siblingfs.json'), 'utf8')
    const attempts: Array<[string[], string]> = [
      [['--compress', cfg.compress ? 'none' : 'lz4'], '--compress'],
      [[...cfg.args, '--chunk-size', '8192'], '--chunk-size'],
      [['--chunk-size', '4096'], '--chunk-size']
    ]
    for (const [flags, named] of attempts) {
      const r = await cliAsync(['mount', m.host, m.mnt, '--store', m.store, ...flags], { timeout: 15000, rescue: () => forceUnmountBelow(m.root) })
      t.false(r.timedOut, `mount ${flags.join(' ')} must not mount`)
      t.is(r.status, 64, `mount ${flags.join(' ')}: exit status (stderr: ${r.stderr.trim()})`)
      t.regex(r.stderr, new RegExp(named), `the message names ${named}`)
      t.is(storeContentHash(m.store), storeHash, `mount ${flags.join(' ')} changed the store`)
      t.is(fs.readFileSync(path.join(m.store, 'siblingfs.json'), 'utf8'), manifest)
      t.false(fs.existsSync(path.join(m.store, 'lock')), 'no lock left behind')
      t.deepEqual(fs.readdirSync(m.mnt), [], 'nothing mounted')
    }
    // the same flags as at creation, or none, are fine
    const m2 = await startMount({ dirs: m, args: [] })
    t.teardown(m2.cleanup)
    t.is(fs.readFileSync(m2.m('new.txt'), 'utf8'), 'new\n')
    t.is(pread(m2.m('big.bin'), 70000, 7).toString(), 'changed')
    await m2.stop()
    t.is(hashTree(m.host), m.hostHash)
  })

  mtest(title(cfg.compress ? 'every written file is chunked, small and new ones too' : 'files under 1 MiB are copied whole; 1 MiB and more are chunked'), async (t) => {
    const m = await useMount(t, {
      host: { 'tiny.txt': 'tiny\n', 'under.bin': blockPattern(MiB - 1, 7), 'exact.bin': blockPattern(MiB, 8) },
      args: cfg.args
    })
    for (const rel of ['tiny.txt', 'under.bin', 'exact.bin']) fs.appendFileSync(m.m(rel), 'END')
    fs.writeFileSync(m.m('created.txt'), 'made in the sandbox\n')
    viewIs(t, m, 'tiny.txt', Buffer.from('tiny\nEND'), 'tiny')
    viewIs(t, m, 'under.bin', Buffer.concat([blockPattern(MiB - 1, 7), Buffer.from('END')]), 'under')
    viewIs(t, m, 'exact.bin', Buffer.concat([blockPattern(MiB, 8), Buffer.from('END')]), 'exact')
    viewIs(t, m, 'created.txt', Buffer.from('made in the sandbox\n'), 'created')
    const smallKind = cfg.compress ? 'chunks' : 'store'
    t.is(storeInfo(m.u('tiny.txt')).origin?.data, smallKind)
    t.is(storeInfo(m.u('under.bin')).origin?.data, smallKind)
    t.is(storeInfo(m.u('exact.bin')).origin?.data, 'chunks')
    t.is(storeInfo(m.u('created.txt')).origin, null, 'a new file has no origin')
    if (cfg.compress) {
      t.truthy(chunksId(m.u('created.txt')), 'a new file in a compressed store is chunked')
      t.truthy(chunksId(m.u('tiny.txt')))
    } else {
      t.is(chunksId(m.u('tiny.txt')), null)
      t.is(chunksId(m.u('under.bin')), null)
      t.is(chunksId(m.u('created.txt')), null)
      t.true(fs.readFileSync(m.u('under.bin')).equals(Buffer.concat([blockPattern(MiB - 1, 7), Buffer.from('END')])), 'the whole copy is in upper/')
    }
    t.is(fs.readdirSync(path.join(m.store, 'maps')).length, cfg.compress ? 4 : 1, 'maps/ holds one map per chunked file')
    hostUnchanged(t, m)
  })

  mtest(title('a compressible tree copied in with cp -r reads back identically; store size vs raw'), async (t) => {
    const files = textTree(42, 6 * MiB)
    const m = await useMount(t, { host: { 'README': 'host\n' }, args: cfg.args })
    const src = path.join(m.root, 'src')
    writeTree(src, files)
    const raw = [...files.values()].reduce((n, b) => n + b.length, 0)
    const before = du(m.store)
    const r = sh(`cp -r ${q(src)} ${q(m.m('tree'))} && sync`)
    t.is(r.status, 0, r.stderr)
    const used = du(m.store) - before
    t.log(`${cfg.name}: ${files.size} text files, ${(raw / MiB).toFixed(2)} MiB raw; store grew by ${(used / MiB).toFixed(2)} MiB allocated = ${(100 * used / raw).toFixed(1)}% of raw`)
    if (cfg.compress) t.true(used < raw * 0.8, `a compressed store must be smaller than the raw text (${used} vs ${raw})`)
    const check = (mm: Mount, what: string): void => {
      for (const [rel, b] of files) {
        const got = fs.readFileSync(mm.m(path.join('tree', rel)))
        if (!got.equals(b)) t.fail(`${what}: ${rel}: ${describeDiff(got, b)}`)
      }
      t.is(sh(`diff -r ${q(src)} ${q(mm.m('tree'))}`).status, 0, `${what}: diff -r`)
    }
    check(m, 'after cp -r')
    const one = [...files.keys()][0]
    if (cfg.compress) {
      const map = readMap(m.store, chunksId(m.u(path.join('tree', one))) as string)
      t.true(map.entries.some(e => (e.flags & 1) === 1), 'text chunks are stored lz4-compressed')
    } else {
      t.is(chunksId(m.u(path.join('tree', one))), null, 'new files in a plain store are plain files')
    }
    hostUnchanged(t, m)
    await m.stop()
    const m2 = await startMount({ dirs: m, args: cfg.args })
    t.teardown(m2.cleanup)
    check(m2, 'after a remount')
  })

  mtest(title('1 MiB of random (incompressible) bytes round-trips, new and over a host file'), async (t) => {
    const rnd = crypto.randomBytes(MiB)
    const m = await useMount(t, { host: { 'h.bin': blockPattern(MiB + 3, 9) }, args: cfg.args })
    fs.writeFileSync(m.m('r.bin'), rnd)
    pwrite(m.m('h.bin'), 1, rnd)
    const hwant = blockPattern(MiB + 3, 9)
    rnd.copy(hwant, 1)
    viewIs(t, m, 'r.bin', rnd, 'new file')
    viewIs(t, m, 'h.bin', hwant, 'host file')
    const map = chunkedInStore(t, m, 'h.bin', MiB + 3)
    t.is(map?.entries.length, 17)
    if (cfg.compress) {
      t.true(map?.entries.every(e => e.flags === 0 && e.storedLen === e.rawLen), 'incompressible chunks are stored raw')
      const rmap = readMap(m.store, chunksId(m.u('r.bin')) as string)
      t.is(rmap.entries.length, 16)
      t.true(rmap.entries.every(e => e.flags === 0))
    }
    hostUnchanged(t, m)
    await m.stop()
    const m2 = await startMount({ dirs: m, args: cfg.args })
    t.teardown(m2.cleanup)
    viewIs(t, m2, 'r.bin', rnd, 'new file after a remount')
    viewIs(t, m2, 'h.bin', hwant, 'host file after a remount')
  })
}


mtest('bad --chunk-size or --cache-size values are usage errors (exit 64) and make no store', async (t) => {
  const dirs = freshDirs(t, { 'a.txt': 'a\n' })
  for (const [flags, named] of [[['--chunk-size', '5000'], '--chunk-size'], [['--chunk-size', '2048'], '--chunk-size'], [['--chunk-size', String(1 << 25)], '--chunk-size'], [['--cache-size', '0'], '--cache-size'], [['--compress', 'zstd'], 'compress']] as Array<[string[], string]>) {
    const r = await cliAsync(['mount', dirs.host, dirs.mnt, '--store', dirs.store, ...flags], { timeout: 15000, rescue: () => forceUnmountBelow(dirs.root) })
    t.false(r.timedOut)
    t.is(r.status, 64, `${flags.join(' ')}: ${r.stderr}`)
    t.regex(r.stderr, new RegExp(named), `${flags.join(' ')}: the message names ${named}`)
    t.false(fs.existsSync(dirs.store), `${flags.join(' ')}: no store is made`)
  }
})
