/**
 * The request loop (patched fuse-native, sfs_loop): one thread reads and serves requests
 * while the others are parked, and a request that waits for JavaScript first hands the
 * reading over. These tests stall JavaScript on purpose (test/helpers/stall.ts) and check
 * that requests answered in C are not held up behind it, and that the stalled one still
 * completes correctly: in the view, in the store, and with the host unchanged.
 */
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { storeInfo, useMount } from '../helpers/sandbox.js'
import { hostUnchanged, mtest, q } from '../helpers/mountkit.js'

const execFileP = promisify(execFile)
const STALL = path.join(__dirname, '..', 'helpers', 'stall.js')
const STALL_MS = 4000

mtest('while JavaScript is stuck on one request, lookups, stats, opens and reads answered in C go on', async (t) => {
  const m = await useMount(t, {
    host: { a: { 'one.txt': '1\n', 'two.txt': '2\n', b: { 'deep.txt': 'd\n' } }, other: { 'o.txt': 'o\n' } },
    env: { NODE_OPTIONS: `--require ${STALL}`, SIBLINGFS_STALL_OP: 'setxattr', SIBLINGFS_STALL_PATH: '/other/o.txt', SIBLINGFS_STALL_MS: String(STALL_MS) }
  })
  const bash = async (cmd: string): Promise<string> => (await execFileP('bash', ['-c', cmd])).stdout
  // `ls` has JS list (and register) the directories: their entries are then looked up,
  // stat'ed, opened and read in C; the kernel holds none of those names yet
  await bash(`ls ${q(m.m('a'))} ${q(m.m('a/b'))} > /dev/null`)
  const started = Date.now()
  const stuck = execFileP('setfattr', ['-n', 'user.k', '-v', 'v', m.m('other/o.txt')]) // a request JS answers
  await new Promise(resolve => setTimeout(resolve, 300))
  const t0 = Date.now()
  const out = await bash(`stat -c %s ${q(m.m('a/one.txt'))} && cat ${q(m.m('a/two.txt'))} ${q(m.m('a/b/deep.txt'))}`)
  const took = Date.now() - t0
  t.is(out, '2\n2\nd\n')
  t.true(took < STALL_MS / 2, `C-answered requests were served while JS was stuck (${took} ms)`)
  await stuck
  t.true(Date.now() - started >= STALL_MS - 100, 'JS was stuck for the whole time')
  // the stalled request completed: view, store; host untouched
  t.is((await execFileP('getfattr', ['--only-values', '-n', 'user.k', m.m('other/o.txt')])).stdout, 'v')
  t.is(storeInfo(m.u('other/o.txt')).origin?.data, 'host', 'a metadata-only sibling')
  t.false(fs.existsSync(m.u('a')), 'nothing of a in the store')
  hostUnchanged(t, m)
})
