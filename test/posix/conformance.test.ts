/**
 * POSIX conformance: every case of cases.ts runs on a fresh copy of FIXTURE in a plain ext4
 * directory and on a fresh copy inside a siblingfs mount of the same fixture; the records
 * must be equal (or, for a documented difference, the mount must give the documented record).
 * One mount serves all cases; each case gets its own copy of the fixture (a host directory
 * cNN/ of the mount, a plain directory cNN/ beside it).
 */
import test from 'ava'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fuseAvailable, hashTree, makeTree, startMount, storeInfo, type Mount, type TreeNode } from '../helpers/sandbox.js'
import { CASES, FIXTURE, knownBugs, knownDifferences } from './cases.js'

const caseDir = (i: number): string => 'c' + String(i).padStart(2, '0')
const tree: { [name: string]: TreeNode } = Object.fromEntries(CASES.map((_, i) => [caseDir(i), FIXTURE]))

let m: Mount | undefined
let plain = ''

test.before(async () => {
  if (!fuseAvailable) return
  plain = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-posix-plain-'))
  makeTree(plain, tree)
  m = await startMount({ host: tree })
})

test.after.always(async () => {
  await m?.cleanup()
  if (plain !== '') fs.rmSync(plain, { recursive: true, force: true })
})

test('the table has at least 40 uniquely named cases; known differences name real cases', (t) => {
  t.true(CASES.length >= 40, String(CASES.length))
  t.is(new Set(CASES.map(c => c.name)).size, CASES.length)
  for (const k of knownBugs) t.true(CASES.some(c => c.name === k.name), k.name)
  for (const k of knownDifferences) {
    t.true(CASES.some(c => c.name === k.name), k.name)
    t.true(k.reason.length > 20, 'a difference needs its reason')
  }
})

/** Makes records comparable: bigint -> string, undefined -> null (what JSON would do). */
function norm (v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (_k, x: unknown) => typeof x === 'bigint' ? String(x) : x)) as unknown
}

CASES.forEach((c, i) => {
  const bug = knownBugs.find(k => k.name === c.name)
  const t0 = !fuseAvailable ? test.skip : bug !== undefined && process.env.SFS_STRICT !== '1' ? test.failing : test
  const known = knownDifferences.find(k => k.name === c.name)
  t0(`${known !== undefined ? '[known difference] ' : ''}${bug !== undefined ? '[BUG] ' : ''}${c.name}`, (t) => {
    if (m === undefined) { t.fail('no mount'); return }
    const ext4 = norm(c.run(path.join(plain, caseDir(i))))
    const mounted = norm(c.run(m.m(caseDir(i))))
    if (known === undefined) {
      t.deepEqual(mounted, ext4)
    } else {
      t.notDeepEqual(mounted, ext4, `documented difference no longer happens; remove it from knownDifferences (${known.reason})`)
      t.deepEqual(mounted, norm(known.expect(ext4)), known.reason)
    }
    t.is(hashTree(m.host), m.hostHash, 'the host tree must not change')
    t.false(storeInfo(m.u(caseDir(i))).whiteout, 'the case directory itself is never deleted')
  })
})
