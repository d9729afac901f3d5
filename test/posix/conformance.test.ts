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
import { CASES, FIXTURE, coherenceDependent, knownBugs, knownDifferences } from './cases.js'

const caseDir = (i: number): string => 'c' + String(i).padStart(2, '0')
const tree: { [name: string]: TreeNode } = Object.fromEntries(CASES.map((_, i) => [caseDir(i), FIXTURE]))

let m: Mount | undefined
/** A second mount with the strict coherence settings, for the cases that need them. */
let strict: Mount | undefined
let plain = ''
const STRICT_ARGS = ['--attr-timeout', '0', '--entry-timeout', '0', '--negative-timeout', '0']

test.before(async () => {
  if (!fuseAvailable) return
  plain = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-posix-plain-'))
  makeTree(plain, tree)
  m = await startMount({ host: tree })
  strict = await startMount({ host: tree, args: STRICT_ARGS })
})

test.after.always(async () => {
  await m?.cleanup()
  await strict?.cleanup()
  if (plain !== '') fs.rmSync(plain, { recursive: true, force: true })
})

test('the table has at least 40 uniquely named cases; known differences name real cases', (t) => {
  t.true(CASES.length >= 40, String(CASES.length))
  t.is(new Set(CASES.map(c => c.name)).size, CASES.length)
  for (const k of knownBugs) t.true(CASES.some(c => c.name === k.name), k.name)
  for (const k of coherenceDependent) t.true(CASES.some(c => c.name === k.name) && k.reason.length > 20, k.name)
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
  const coherence = coherenceDependent.find(k => k.name === c.name)
  t0(`${known !== undefined ? '[known difference] ' : ''}${coherence !== undefined ? '[strict coherence] ' : ''}${bug !== undefined ? '[BUG] ' : ''}${c.name}`, (t) => {
    const mm = coherence !== undefined ? strict : m
    if (mm === undefined) { t.fail('no mount'); return }
    const ext4 = norm(c.run(path.join(plain, caseDir(i))))
    const mounted = norm(c.run(mm.m(caseDir(i))))
    if (known === undefined) {
      t.deepEqual(mounted, ext4)
    } else {
      t.notDeepEqual(mounted, ext4, `documented difference no longer happens; remove it from knownDifferences (${known.reason})`)
      t.deepEqual(mounted, norm(known.expect(ext4)), known.reason)
    }
    t.is(hashTree(mm.host), mm.hostHash, 'the host tree must not change')
    t.false(storeInfo(mm.u(caseDir(i))).whiteout, 'the case directory itself is never deleted')
  })
})
