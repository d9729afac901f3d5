/**
 * Damaged stores: what a reader of the mount and `siblingfs fsck` see when the files of a
 * chunked sibling are damaged behind the daemon's back (on a plain and on an lz4 store).
 *
 * A chunked sibling with several stored chunks is made through the mount; with the daemon
 * stopped, the test then (a) flips bytes inside one stored chunk of the data file (the slot
 * is found from the map, parsed from STORE-FORMAT.md's layout), (b) truncates a data file
 * inside a stored chunk, (c) deletes a chunk map, (f) damages a map header. After a remount:
 * reads touching a damaged chunk fail with EIO, everything else reads right, the daemon keeps
 * serving and logs the file and offset; `siblingfs fsck` exits 1 and says what is wrong.
 * Then (d) dangling maps and (e) leftovers in work/ are reported and repaired, and fsck of a
 * mounted store is refused.
 */
import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import type { ExecutionContext } from 'ava'
import { errOf, hashTree, startMount, useMount, workEntries, type Mount } from '../helpers/sandbox.js'
import { mtest } from '../helpers/mountkit.js'
import { cli } from '../helpers/progkit.js'
import {
  CS, MiB, STORE_CONFIGS, blockPattern, chunksId, describeDiff, fsck, fsckText, preadErr, pwrite, readMap, slotOffset,
  textTree, waitForLine
} from '../helpers/sparsekit.js'

const SIZE = MiB + 1000
const FILES = ['a.bin', 'b.bin', 'c.bin', 'd.bin', 'ok.bin']

function hostTree (): { [name: string]: Buffer | string } {
  const t: { [name: string]: Buffer | string } = { 'small.txt': 'small host file\n' }
  FILES.forEach((f, i) => { t[f] = blockPattern(SIZE, 50 + i) })
  return t
}

/** Writes chunks 1 (compressible text), 3 (random), 5 (text) whole and 7 in part; returns the model. */
function writeChunks (m: Mount, rel: string, base: Buffer): Buffer {
  const model = Buffer.from(base)
  const text = Buffer.concat([...textTree(7, 300000).values()])
  const parts: Array<[number, Buffer]> = [
    [1 * CS, text.subarray(0, CS)],
    [3 * CS, crypto.randomBytes(CS)],
    [5 * CS, text.subarray(CS, 2 * CS)],
    [7 * CS + 1000, Buffer.from('a partial write into chunk 7')]
  ]
  for (const [at, b] of parts) {
    pwrite(m.m(rel), at, b, true)
    b.copy(model, at)
  }
  return model
}

function expectRead (t: ExecutionContext, m: Mount, rel: string, at: number, len: number, want: Buffer | 'EIO', what: string): void {
  const r = preadErr(m.m(rel), at, len)
  if (want === 'EIO') {
    t.is(r.err, 'EIO', `${what}: read ${rel} ${at}+${len} must fail with EIO`)
  } else {
    t.is(r.err, 'OK', `${what}: read ${rel} ${at}+${len}`)
    if (r.data !== null) t.true(r.data.equals(want.subarray(at, at + len)), `${what}: read ${rel} ${at}+${len}: ${describeDiff(r.data, want.subarray(at, at + len))}`)
  }
}

interface Damaged { m: Mount, m2: Mount, models: Map<string, Buffer>, ids: Map<string, string>, hostHash: string, fsckBefore: ReturnType<typeof fsckText> }

/**
 * Mounts, writes chunks 1, 3, 5 and (in part) 7 of every file of FILES, stops, lets
 * `damage` change the store, runs fsck (text), remounts.
 */
async function damagedStore (t: ExecutionContext, args: string[], damage: (m: Mount, ids: Map<string, string>) => void): Promise<Damaged> {
  const host = hostTree()
  const m = await useMount(t, { host, args })
  const models = new Map<string, Buffer>()
  for (const f of FILES) models.set(f, writeChunks(m, f, host[f] as Buffer))
  await m.stop()
  const ids = new Map(FILES.map(f => [f, chunksId(m.u(f)) as string]))
  for (const f of FILES) t.truthy(ids.get(f), `${f} is chunked`)
  damage(m, ids)
  const hostHash = hashTree(m.host)
  const fsckBefore = fsckText(m.store)
  const m2 = await startMount({ dirs: m, args })
  t.teardown(m2.cleanup)
  return { m, m2, models, ids, hostHash, fsckBefore }
}

/** The merged root still lists every file, and the undamaged ones read right. */
function othersFine (t: ExecutionContext, d: Damaged, damaged: string[]): void {
  const r = errOf(() => fs.readdirSync(d.m2.mnt))
  t.is(r, 'OK', 'the directory holding a damaged file can be listed')
  if (r === 'OK') t.deepEqual(fs.readdirSync(d.m2.mnt).sort(), [...FILES, 'small.txt'].sort(), 'the listing is complete')
  for (const f of FILES.filter(x => !damaged.includes(x))) {
    const got = errOf(() => fs.readFileSync(d.m2.m(f)))
    t.is(got, 'OK', `${f} reads`)
    if (got === 'OK') t.true(fs.readFileSync(d.m2.m(f)).equals(d.models.get(f) as Buffer), `${f} reads right`)
  }
  t.is(fs.readFileSync(d.m2.m('small.txt'), 'utf8'), 'small host file\n', 'a host file reads right')
  fs.writeFileSync(d.m2.m('new.txt'), 'still works\n')
  t.is(fs.readFileSync(d.m2.m('new.txt'), 'utf8'), 'still works\n', 'the daemon keeps serving')
  fs.rmSync(d.m2.m('new.txt'))
  t.is(d.m2.child.exitCode, null, 'the daemon is still running')
}

function flipInChunk (m: Mount, id: string, rel: string, c: number): void {
  const e = readMap(m.store, id).entries.find(x => x.c === c)
  if (e === undefined) throw new Error(`chunk ${c} of ${rel} is not stored`)
  const at = slotOffset(c, e.slot, CS) + Math.floor(e.storedLen / 2)
  const fd = fs.openSync(m.u(rel), 'r+')
  const b = Buffer.alloc(4)
  fs.readSync(fd, b, 0, 4, at)
  for (let i = 0; i < 4; i++) b[i] ^= 0x5a
  fs.writeSync(fd, b, 0, 4, at)
  fs.closeSync(fd)
}

for (const cfg of STORE_CONFIGS) {
  mtest(`${cfg.name}: (a) bytes flipped in a stored chunk, (b) a data file cut short: those chunks fail with EIO, alone`, async (t) => {
    let flags1 = -1
    const d = await damagedStore(t, cfg.args, (m, ids) => {
      const mapA = readMap(m.store, ids.get('a.bin') as string)
      t.deepEqual(mapA.entries.map(e => e.c), [1, 3, 5, 7], 'chunks 1, 3, 5 and 7 are stored')
      flags1 = mapA.entries[0].flags
      flipInChunk(m, ids.get('a.bin') as string, 'a.bin', 1)
      const e3 = readMap(m.store, ids.get('b.bin') as string).entries.find(e => e.c === 3)
      fs.truncateSync(m.u('b.bin'), slotOffset(3, e3?.slot ?? 1, CS) + 100)
    })
    if (cfg.compress) t.is(flags1 & 1, 1, 'chunk 1 (text) is stored compressed: the checksum is checked before the decoder')
    const { m, m2, models } = d
    // fsck says what is wrong, in words
    const text = d.fsckBefore
    t.is(text.status, 1, `fsck exits 1 on a damaged store\n${text.stdout}${text.stderr}`)
    t.regex(text.stdout, /error: \/a\.bin: chunk 1 \(offset 65536\): checksum mismatch/)
    t.regex(text.stdout, /error: \/b\.bin: chunk 3 \(offset 196608\): stored data missing/)
    t.regex(text.stdout, /error: \/b\.bin: chunk 5 \(offset 327680\): stored data missing/)
    t.notRegex(text.stdout, /\/(c|d|ok)\.bin/, 'intact files are not reported')

    const A = models.get('a.bin') as Buffer
    expectRead(t, m2, 'a.bin', CS, CS, 'EIO', 'a: the damaged chunk')
    expectRead(t, m2, 'a.bin', CS + 100, 10, 'EIO', 'a: inside the damaged chunk')
    expectRead(t, m2, 'a.bin', CS - 10, 20, 'EIO', 'a: across into the damaged chunk')
    expectRead(t, m2, 'a.bin', 0, CS, A, 'a: the host chunk before it')
    expectRead(t, m2, 'a.bin', 2 * CS, 2 * CS, A, 'a: a host chunk and a stored chunk after it')
    expectRead(t, m2, 'a.bin', 5 * CS, 3 * CS, A, 'a: chunks 5-7')
    expectRead(t, m2, 'a.bin', SIZE - 1000, 1000, A, 'a: the tail')
    t.is(errOf(() => fs.readFileSync(m2.m('a.bin'))), 'EIO', 'a: reading the whole file fails')
    t.is(errOf(() => pwrite(m2.m('a.bin'), CS + 5, 'x')), 'EIO', 'a: a partial write into the damaged chunk fails (it needs the old bytes)')
    const B = models.get('b.bin') as Buffer
    expectRead(t, m2, 'b.bin', 0, 3 * CS, B, 'b: chunks 0-2 (host, stored, host)')
    expectRead(t, m2, 'b.bin', 3 * CS, CS, 'EIO', 'b: the chunk cut short')
    expectRead(t, m2, 'b.bin', 5 * CS + 7, 100, 'EIO', 'b: a chunk past the cut')
    expectRead(t, m2, 'b.bin', 9 * CS, CS, B, 'b: a host chunk past the cut')
    othersFine(t, d, ['a.bin', 'b.bin'])
    t.truthy(await waitForLine(m2.stderr, l => /a\.bin/.test(l) && /offset 65536/.test(l) && /checksum/.test(l)), `the daemon logs file and offset of a:\n${m2.stderr()}`)
    t.truthy(await waitForLine(m2.stderr, l => /b\.bin/.test(l) && /offset 196608/.test(l)), `the daemon logs file and offset of b:\n${m2.stderr()}`)

    // a whole-chunk write needs no old bytes: it replaces the damaged chunk
    const whole = crypto.randomBytes(CS)
    pwrite(m2.m('a.bin'), CS, whole)
    whole.copy(A, CS)
    t.true(fs.readFileSync(m2.m('a.bin')).equals(A), 'a.bin reads whole again after the damaged chunk was overwritten')
    // fsck is refused while mounted
    const busy = cli(['fsck', m.store])
    t.is(busy.status, 73, `fsck of a mounted store: ${busy.stderr}`)
    t.regex(busy.stderr, /mounted by process \d+/)
    t.is(await m2.stop(), 0)
    const after = fsck(m.store)
    t.is(after.status, 1, 'b.bin is still damaged')
    t.deepEqual([...new Set((after.json?.findings ?? []).map(f => f.path))], ['/b.bin'], 'a.bin is clean again after its damaged chunk was rewritten')
    t.is(hashTree(m.host), d.hostHash, 'the host tree must not change')
  })

  mtest(`${cfg.name}: (c) a deleted chunk map: the file fails with EIO and a log line; the directory still lists`, async (t) => {
    const d = await damagedStore(t, cfg.args, (m, ids) => fs.rmSync(path.join(m.store, 'maps', ids.get('c.bin') as string)))
    t.is(d.fsckBefore.status, 1)
    t.regex(d.fsckBefore.stdout, /error: \/c\.bin: its chunk map \(maps\/[0-9a-f]+\) is missing/)
    const { m2 } = d
    const st = errOf(() => fs.statSync(m2.m('c.bin')))
    t.true(st === 'OK' || st === 'EIO', `stat of c.bin: ${st} (expected to work, or EIO; not ENOENT)`)
    t.is(errOf(() => fs.readFileSync(m2.m('c.bin'))), 'EIO', 'reading c.bin fails with EIO')
    othersFine(t, d, ['c.bin'])
    t.truthy(await waitForLine(m2.stderr, l => /c\.bin/.test(l) && /map/.test(l), 5000), `the daemon says c.bin's map is missing:\n${m2.stderr()}`)
    t.is(hashTree(d.m.host), d.hostHash)
  })

  mtest(`${cfg.name}: (f) a damaged map header: the file fails with EIO and a log line; the directory still lists`, async (t) => {
    const d = await damagedStore(t, cfg.args, (m, ids) => {
      const fd = fs.openSync(path.join(m.store, 'maps', ids.get('d.bin') as string), 'r+')
      fs.writeSync(fd, Buffer.from([0x77]), 0, 1, 17) // a byte of the size field
      fs.closeSync(fd)
    })
    t.is(d.fsckBefore.status, 1)
    t.regex(d.fsckBefore.stdout, /error: \/d\.bin: its chunk map maps\/[0-9a-f]+ is damaged: .*header checksum mismatch/)
    const { m2 } = d
    const st = errOf(() => fs.statSync(m2.m('d.bin')))
    t.true(st === 'OK' || st === 'EIO', `stat of d.bin: ${st}`)
    t.is(errOf(() => fs.readFileSync(m2.m('d.bin'))), 'EIO', 'reading d.bin fails with EIO')
    othersFine(t, d, ['d.bin'])
    t.truthy(await waitForLine(m2.stderr, l => /d\.bin/.test(l) && /header/.test(l), 5000), `the daemon logs the damaged header:\n${m2.stderr()}`)
    t.is(hashTree(d.m.host), d.hostHash)
  })

  mtest(`${cfg.name}: the log line of a damaged chunk names the file by its path, not /proc/self/fd/N/<name>`, async (t) => {
    const m = await useMount(t, { host: { sub: { deep: { 'e.bin': blockPattern(SIZE, 9) } }, other: { deep: { 'e.bin': blockPattern(SIZE, 10) } } }, args: cfg.args })
    pwrite(m.m('sub/deep/e.bin'), CS, crypto.randomBytes(CS), true)
    pwrite(m.m('other/deep/e.bin'), CS, crypto.randomBytes(CS), true)
    await m.stop()
    flipInChunk(m, chunksId(m.u('sub/deep/e.bin')) as string, 'sub/deep/e.bin', 1)
    const m2 = await startMount({ dirs: m, args: cfg.args })
    t.teardown(m2.cleanup)
    t.is(errOf(() => fs.readFileSync(m2.m('sub/deep/e.bin'))), 'EIO')
    t.is(errOf(() => fs.readFileSync(m2.m('other/deep/e.bin'))), 'OK')
    const line = await waitForLine(m2.stderr, l => /offset 65536/.test(l)) ?? ''
    t.regex(line, /sub\/deep\/e\.bin/, `which e.bin? the log line: ${line}`)
    t.is(hashTree(m.host), m.hostHash)
  })

  mtest(`${cfg.name}: fsck reports a dangling map and leftovers in work/; --repair removes them and loses nothing`, async (t) => {
    const host = hostTree()
    const m = await useMount(t, { host, args: cfg.args })
    const model = writeChunks(m, 'a.bin', host['a.bin'] as Buffer)
    fs.writeFileSync(m.m('new.txt'), 'new\n')
    // fsck of a mounted store is refused, and changes nothing
    const busy = fsck(m.store)
    t.is(busy.status, 73, busy.stderr)
    t.regex(busy.stderr, /mounted by process/)
    await m.stop()
    t.is(fsck(m.store).status, 0, 'a fresh store is clean')
    const id = chunksId(m.u('a.bin')) as string
    const dangling = 'feedfacefeedfacefeedface'
    fs.copyFileSync(path.join(m.store, 'maps', id), path.join(m.store, 'maps', dangling))
    fs.writeFileSync(path.join(m.store, 'work', '99999-1'), 'half a copy-up')
    fs.mkdirSync(path.join(m.store, 'work', '99999-2'))
    fs.writeFileSync(path.join(m.store, 'work', '99999-2', 'x'), 'x')

    const r = fsck(m.store)
    t.is(r.status, 1, 'dangling map and leftovers are problems')
    const f = r.json?.findings ?? []
    t.true(f.some(x => x.path === `maps/${dangling}` && /no file refers to/.test(x.message)), JSON.stringify(f))
    t.true(f.some(x => /work/.test(x.path) && /2 unfinished/.test(x.message)), JSON.stringify(f))
    t.false(f.some(x => x.severity === 'error'), 'they are not errors')
    t.true(fs.existsSync(path.join(m.store, 'maps', dangling)), 'fsck without --repair changes nothing')

    const rep = fsck(m.store, true)
    t.is(rep.status, 0, `--repair fixes them: ${rep.stdout}${rep.stderr}`)
    t.true((rep.json?.findings ?? []).every(x => x.severity === 'fixed'))
    t.false(fs.existsSync(path.join(m.store, 'maps', dangling)), 'the dangling map is removed')
    t.true(fs.existsSync(path.join(m.store, 'maps', id)), 'the map in use is kept')
    t.deepEqual(workEntries(m.store), [], 'work/ is empty')
    const clean = fsckText(m.store)
    t.is(clean.status, 0, clean.stdout)
    t.regex(clean.stdout, /clean/)

    const m2 = await startMount({ dirs: m, args: cfg.args })
    t.teardown(m2.cleanup)
    t.true(fs.readFileSync(m2.m('a.bin')).equals(model), 'the repaired store lost nothing')
    t.is(fs.readFileSync(m2.m('new.txt'), 'utf8'), 'new\n')
    t.is(hashTree(m.host), m.hostHash)
  })
}

