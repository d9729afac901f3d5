/**
 * A store of format version 1 (before chunked siblings) is migrated when mounted: its
 * changes stay, the manifest says version 2, maps/ exists, and chunked siblings work.
 */
import fs from 'node:fs'
import path from 'node:path'
import { fuseAvailable, hashTree, startMount, storeInfo } from '../helpers/sandbox.js'
import { freshDirs } from '../helpers/progkit.js'
import test from 'ava'

;(fuseAvailable ? test : test.skip)('a version 1 store mounts, is migrated to version 2, and keeps its changes', async (t) => {
  const d = freshDirs(t, { 'a.txt': 'alpha\n', 'big.bin': Buffer.alloc(2 << 20, 7) })
  const host = fs.realpathSync(d.host)
  // What siblingfs 0.1 (store format 1) left: a manifest without options, upper/ with a
  // changed file and a whiteout, work/, no maps/.
  fs.mkdirSync(path.join(d.store, 'upper'), { recursive: true })
  fs.mkdirSync(path.join(d.store, 'work'))
  fs.writeFileSync(path.join(d.store, 'siblingfs.json'), JSON.stringify({ format: 'siblingfs-store', version: 1, host, createdAt: '2026-11-01T00:00:00Z', options: {} }))
  fs.writeFileSync(path.join(d.store, 'upper', 'new.txt'), 'made under format 1\n')
  const before = hashTree(d.host)
  const m = await startMount({ dirs: d })
  t.teardown(m.cleanup)
  t.is(fs.readFileSync(m.m('new.txt'), 'utf8'), 'made under format 1\n')
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\n')
  const man = JSON.parse(fs.readFileSync(path.join(d.store, 'siblingfs.json'), 'utf8')) as { version: number, options: unknown }
  t.is(man.version, 2)
  t.true(fs.statSync(path.join(d.store, 'maps')).isDirectory())
  // a chunked sibling in the migrated store
  const fd = fs.openSync(m.m('big.bin'), 'r+')
  fs.writeSync(fd, 'x', 100)
  fs.closeSync(fd)
  t.is(storeInfo(m.u('big.bin')).origin?.data, 'chunks')
  t.is(fs.readFileSync(m.m('big.bin'))[100], 'x'.charCodeAt(0))
  t.is(hashTree(d.host), before)
})
