/**
 * Host drift: a chunked sibling reads the chunks it never wrote from its host original, so
 * when that original changes behind the store (appended, rewritten in place, cut short,
 * deleted), the daemon must say so (a log line at mount, `siblingfs status`), keep serving
 * the chunks the sandbox wrote, and fail the others with EIO: never old and new host bytes
 * mixed, never silent zeros. Siblings whose original did not change read as before; a
 * metadata-only sibling whose original changed is listed as drift of kind metadata-only.
 *
 * These tests change the HOST on purpose (between two mounts); the host is compared with its
 * hash taken after that change.
 */
import fs from 'node:fs'
import crypto from 'node:crypto'
import type { ExecutionContext } from 'ava'
import { errOf, hashTree, sh, startMount, useMount, type Mount } from '../helpers/sandbox.js'
import { mtest, q } from '../helpers/mountkit.js'
import { cli } from '../helpers/progkit.js'
import { CS, MiB, STORE_CONFIGS, blockPattern, describeDiff, fsck, preadErr, pwrite, waitForLine } from '../helpers/sparsekit.js'

const SIZE = 4 * MiB
const AT = 100000 // in chunk 1
const CHUNKED = ['big.bin', 'rw.bin', 'same.bin', 'shrunk.bin', 'gone.bin']

interface Drift { path: string, origin: string, kind: string }

function statusJson (m: Mount): { status: number | null, drift: Drift[], raw: string } {
  const r = cli(['status', '--host', m.host, '--store', m.store, '--json'])
  let drift: Drift[] = []
  try { drift = (JSON.parse(r.stdout) as { drift: Drift[] }).drift } catch { /* reported below */ }
  return { status: r.status, drift, raw: r.stdout + r.stderr }
}

function expectRead (t: ExecutionContext, m: Mount, rel: string, at: number, len: number, want: Buffer | 'EIO', what: string): void {
  const r = preadErr(m.m(rel), at, len)
  if (want === 'EIO') {
    t.is(r.err, 'EIO', `${what}: read ${rel} ${at}+${len} must fail with EIO${r.data !== null ? ` (got ${r.data.length} bytes${r.data.every(b => b === 0) ? ', all zeros' : ''})` : ''}`)
  } else {
    t.is(r.err, 'OK', `${what}: read ${rel} ${at}+${len}`)
    if (r.data !== null) t.true(r.data.equals(want.subarray(at, at + len)), `${what}: ${rel} ${at}+${len}: ${describeDiff(r.data, want.subarray(at, at + len))}`)
  }
}

for (const cfg of STORE_CONFIGS) {
  mtest(`${cfg.name}: host files changed behind chunked siblings: logged, listed by status, written chunks read, the rest EIO`, async (t) => {
    const host: { [name: string]: Buffer | string } = { 'meta.txt': 'metadata only\n', 'meta_same.txt': 'unchanged\n' }
    CHUNKED.forEach((f, i) => { host[f] = blockPattern(SIZE, 30 + i) })
    const m = await useMount(t, { host, args: cfg.args })
    const written = new Map<string, Buffer>()
    for (const f of CHUNKED) {
      const b = Buffer.from(host[f] as Buffer)
      b[AT] ^= 0xff
      pwrite(m.m(f), AT, b.subarray(AT, AT + 1), true)
      written.set(f, b)
    }
    fs.chmodSync(m.m('meta.txt'), 0o600)
    fs.chmodSync(m.m('meta_same.txt'), 0o600)
    t.is(hashTree(m.host), m.hostHash)
    await m.stop()
    const before = statusJson(m)
    t.is(before.status, 0, before.raw)
    t.deepEqual(before.drift, [], 'no drift before the host changes')

    // change the host behind the store (on purpose)
    fs.appendFileSync(m.h('big.bin'), 'APPENDED ON THE HOST')
    const rwFd = fs.openSync(m.h('rw.bin'), 'r+') // rewritten in place, same size
    fs.writeSync(rwFd, crypto.randomBytes(1000), 0, 1000, 5 * CS + 10)
    fs.writeSync(rwFd, crypto.randomBytes(1000), 0, 1000, AT - 500) // also under the chunk the sandbox wrote
    fs.closeSync(rwFd)
    fs.truncateSync(m.h('shrunk.bin'), MiB)
    fs.rmSync(m.h('gone.bin'))
    fs.appendFileSync(m.h('meta.txt'), 'changed on the host\n')
    const hostHash2 = hashTree(m.host)

    const m2 = await startMount({ dirs: m, args: cfg.args })
    t.teardown(m2.cleanup)
    await waitForLine(m2.stderr, l => /drift/.test(l) && l.includes('/shrunk.bin'))
    const log = m2.stderr()
    for (const f of ['big.bin', 'rw.bin', 'shrunk.bin', 'gone.bin', 'meta.txt']) {
      t.true(log.split('\n').some(l => /drift/.test(l) && l.includes('/' + f)), `the daemon logs host drift of /${f}:\n${log}`)
    }
    for (const f of ['same.bin', 'meta_same.txt']) t.false(log.includes('/' + f), `no drift logged for /${f}`)

    // status, while mounted (text and JSON)
    const st = cli(['status', '--host', m.host, '--store', m.store])
    t.is(st.status, 0, st.stderr)
    const driftPart = st.stdout.slice(st.stdout.indexOf('drift:'))
    for (const f of ['big.bin', 'rw.bin', 'shrunk.bin', 'gone.bin', 'meta.txt']) t.regex(driftPart, new RegExp(`/${f.replace('.', '\\.')}\\b`), `status lists /${f} under drift:\n${st.stdout}`)
    t.notRegex(driftPart, /same/, 'unchanged originals are not drift')
    const sj = statusJson(m)
    t.is(sj.status, 0, sj.raw)
    const kinds = Object.fromEntries(sj.drift.map(d => [d.path, d.kind]))
    t.deepEqual(kinds, { '/big.bin': 'chunked', '/rw.bin': 'chunked', '/shrunk.bin': 'chunked', '/gone.bin': 'chunked', '/meta.txt': 'metadata-only' }, sj.raw)

    // reads: the written chunk works, never-written chunks fail with EIO
    for (const f of ['big.bin', 'rw.bin', 'shrunk.bin', 'gone.bin']) {
      const w = written.get(f) as Buffer
      t.is(errOf(() => fs.statSync(m2.m(f))), 'OK', `${f}: stat works`)
      t.is(fs.statSync(m2.m(f)).size, SIZE, `${f}: the sibling keeps its size`)
      expectRead(t, m2, f, CS, CS, w, `${f}: the chunk the sandbox wrote`)
      expectRead(t, m2, f, AT - 10, 20, w, `${f}: around the written byte`)
      expectRead(t, m2, f, 0, 100, 'EIO', `${f}: chunk 0, never written`)
      expectRead(t, m2, f, 5 * CS, CS, 'EIO', `${f}: chunk 5, never written`)
      expectRead(t, m2, f, 40 * CS, 10, 'EIO', `${f}: chunk 40, never written (past a shrunk host file's end)`)
      expectRead(t, m2, f, CS - 5, 10, 'EIO', `${f}: across chunks 0-1`)
      t.is(errOf(() => fs.readFileSync(m2.m(f))), 'EIO', `${f}: the whole file`)
    }
    // a partial write into a never-written chunk needs the original's bytes: EIO, not zeros
    t.is(errOf(() => pwrite(m2.m('big.bin'), 3 * CS + 5, 'x')), 'EIO', 'a partial write into an unwritten chunk of a drifted sibling')
    expectRead(t, m2, 'big.bin', 3 * CS, CS, 'EIO', 'big.bin: chunk 3 after the refused write')
    // a whole-chunk write needs no old bytes
    const whole = crypto.randomBytes(CS)
    pwrite(m2.m('big.bin'), 0, whole)
    const big = written.get('big.bin') as Buffer
    whole.copy(big, 0)
    expectRead(t, m2, 'big.bin', 0, 2 * CS, big, 'big.bin: chunks 0-1 after a whole-chunk write')
    // unchanged originals
    t.true(fs.readFileSync(m2.m('same.bin')).equals(written.get('same.bin') as Buffer), 'same.bin: original unchanged, reads right')
    t.is(fs.statSync(m2.m('meta.txt')).mode & 0o777, 0o600, 'and keeps its own mode')
    t.is(fs.readFileSync(m2.m('meta_same.txt'), 'utf8'), 'unchanged\n')
    t.is(m2.child.exitCode, null, 'the daemon keeps serving')
    t.truthy(await waitForLine(m2.stderr, l => /big\.bin/.test(l) && /offset/.test(l) && /host/.test(l)), `an EIO read is logged with the file:\n${m2.stderr()}`)
    t.is(hashTree(m.host), hostHash2, 'the host tree must not change (after the test\'s own change)')

    await m2.stop()
    const r = fsck(m.store)
    const findings = r.json?.findings ?? []
    t.true(findings.some(f => f.path === '/rw.bin' && /drift/.test(f.message)), `fsck reports drift of rw.bin: ${JSON.stringify(findings)}`)
    t.true(findings.some(f => f.path === '/gone.bin' && f.severity === 'error'), 'fsck: gone.bin\'s original is gone')
    t.false(findings.some(f => f.path === '/same.bin'), 'fsck: same.bin is fine')
    const after = statusJson(m)
    t.deepEqual(after.drift.map(d => d.path).sort(), ['/big.bin', '/gone.bin', '/meta.txt', '/rw.bin', '/shrunk.bin'], 'status after the stop')
    t.is(hashTree(m.host), hostHash2)
  })
}

mtest('a metadata-only sibling whose host original changed: st_size and the bytes read agree (the new host file)', async (t) => {
  const m = await useMount(t, { host: { 'grow.txt': 'metadata only\n', 'shrink.txt': 'a longer original content\n' } })
  fs.chmodSync(m.m('grow.txt'), 0o600)
  fs.chmodSync(m.m('shrink.txt'), 0o600)
  await m.stop()
  fs.appendFileSync(m.h('grow.txt'), 'changed on the host\n')
  fs.writeFileSync(m.h('shrink.txt'), 'XYZ\n')
  const hostHash2 = hashTree(m.host)
  const m2 = await startMount({ dirs: m })
  t.teardown(m2.cleanup)
  for (const f of ['grow.txt', 'shrink.txt']) {
    const now = fs.readFileSync(m.h(f), 'utf8')
    const got = fs.readFileSync(m2.m(f), 'utf8')
    t.is(fs.statSync(m2.m(f)).size, Buffer.byteLength(got), `${f}: st_size agrees with the bytes read`)
    t.is(got, now, `${f}: shows the new host bytes (as \`siblingfs status\` says)`)
    t.is(fs.statSync(m2.m(f)).mode & 0o777, 0o600)
  }
  t.is(hashTree(m.host), hostHash2)
})

mtest('a host file rewritten in place with its mtime put back (rsync --inplace -t, touch -r) is still drift: never old and new bytes mixed', async (t) => {
  const base = blockPattern(SIZE, 40)
  const m = await useMount(t, { host: { 'f.bin': base } })
  pwrite(m.m('f.bin'), AT, 'x', true)
  await m.stop()
  const f = m.h('f.bin')
  const ref = m.root + '/ref'
  // same inode, same size, same mtime (to the nanosecond); only ctime tells
  const r = sh(`touch -r ${q(f)} ${q(ref)} && printf NEWHOSTBYTES | dd of=${q(f)} bs=1 seek=${5 * CS} conv=notrunc status=none && touch -r ${q(ref)} ${q(f)}`)
  t.is(r.status, 0, r.stderr)
  const hostHash2 = hashTree(m.host)
  const m2 = await startMount({ dirs: m })
  t.teardown(m2.cleanup)
  const sj = statusJson(m)
  t.deepEqual(sj.drift.map(d => d.path), ['/f.bin'], `status lists the rewritten original as drift: ${sj.raw}`)
  const c5 = preadErr(m2.m('f.bin'), 5 * CS, 12)
  t.is(c5.err, 'EIO', `chunk 5 (never written by the sandbox) must not read the new host bytes next to chunk 1 made from the old ones (got ${c5.data?.toString('latin1') ?? c5.err})`)
  t.is(hashTree(m.host), hostHash2)
})
