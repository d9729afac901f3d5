/**
 * Chunk maps are made without an fsync (a copy-up into a chunked sibling costs no disk
 * flush); a power loss before the file's first fsync may leave such a map empty (0 bytes),
 * as ext4 leaves a new file whose data never reached the disk. This simulates that state
 * (the daemon stopped, the map truncated to 0) and checks that the file then reads as it was
 * made: its host original, or an empty file when it was made in the sandbox; that fsck
 * warns and does not fail; that the file is usable again (written, read back, remounted);
 * and that a map that is *missing* still fails with EIO (deleted, not lost).
 * Three places are checked: the view, the store, the host (unchanged).
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { errOf, hashTree, startMount, useMount } from '../helpers/sandbox.js'
import { mtest } from '../helpers/mountkit.js'
import { MiB, STORE_CONFIGS, blockPattern, chunksId, fsck, pwrite, readMap, waitForLine } from '../helpers/sparsekit.js'

const SIZE = 2 * MiB + 777
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex')

for (const sc of STORE_CONFIGS) {
  mtest(`${sc.name}: a chunk map left empty by a power loss reads as the file was made; fsck warns; the file works again`, async (t) => {
    const host = blockPattern(SIZE, 7)
    const m = await useMount(t, { host: { 'big.bin': host, 'gone.bin': blockPattern(SIZE, 8) }, args: sc.args })
    // A chunked sibling of a host file, and (lz4 store: every new file is chunked) a new file.
    pwrite(m.m('big.bin'), MiB + 5, 'changed, never fsynced')
    pwrite(m.m('gone.bin'), 100, 'x')
    fs.writeFileSync(m.m('new.bin'), blockPattern(300000, 9))
    const bigId = chunksId(m.u('big.bin'))
    const goneId = chunksId(m.u('gone.bin'))
    const newId = chunksId(m.u('new.bin'))
    t.truthy(bigId, 'big.bin is a chunked sibling')
    t.is(newId !== null, sc.compress, 'a new file is chunked in an lz4 store only')
    t.is(await m.stop(), 0)
    const dirs = { root: m.root, host: m.host, mnt: m.mnt, store: m.store }

    // What a power loss before any fsync may leave: empty maps. And one map deleted.
    fs.truncateSync(path.join(m.store, 'maps', bigId as string), 0)
    if (newId !== null) fs.truncateSync(path.join(m.store, 'maps', newId), 0)
    fs.rmSync(path.join(m.store, 'maps', goneId as string))
    const f = fsck(m.store)
    t.is(f.status, 1, 'fsck exits 1 (the missing map is an error)')
    const about = (rel: string): string[] => (f.json?.findings ?? []).filter(x => x.path === '/' + rel).map(x => `${x.severity}: ${x.message}`)
    t.regex(about('big.bin').join('\n'), /^warning: .*empty.*host original \/big\.bin/)
    t.regex(about('gone.bin').join('\n'), /^error: .*missing/)
    if (newId !== null) t.regex(about('new.bin').join('\n'), /^warning: .*empty.*\(empty\)/)

    const m2 = await startMount({ dirs, args: sc.args })
    t.teardown(() => m2.cleanup())
    // view: the host original, whole, with its size; the new file empty; the deleted map EIO
    t.is(fs.statSync(m2.m('big.bin')).size, SIZE, 'size before any open (from the origin)')
    t.is(sha(fs.readFileSync(m2.m('big.bin'))), sha(host), 'big.bin reads as its host original')
    if (newId !== null) t.is(fs.readFileSync(m2.m('new.bin')).length, 0, 'new.bin reads as made: empty')
    t.is(errOf(() => fs.readFileSync(m2.m('gone.bin'))), 'EIO', 'a missing map is still an error')
    t.truthy(await waitForLine(m2.stderr, l => /big\.bin: its chunk map maps\/\w+ was empty/.test(l)), 'the daemon logs it')
    // the file works again: written, read back, and still so after a remount
    pwrite(m2.m('big.bin'), 10, 'again', true)
    const want = Buffer.from(host)
    want.write('again', 10)
    t.is(sha(fs.readFileSync(m2.m('big.bin'))), sha(want))
    // store: the map is a real map again, of the host's size, one chunk stored
    const map = readMap(m2.store, bigId as string)
    t.is(map.size, SIZE)
    t.is(map.entries.length, 1)
    t.is(await m2.stop(), 0)
    const m3 = await startMount({ dirs, args: sc.args })
    t.teardown(() => m3.cleanup())
    t.is(sha(fs.readFileSync(m3.m('big.bin'))), sha(want), 'after a remount')
    t.is(await m3.stop(), 0)
    // host: untouched
    t.is(hashTree(m.host), m.hostHash)
  })
}
