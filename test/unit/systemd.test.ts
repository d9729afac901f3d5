/**
 * The systemd unit passes `systemd-analyze verify` (scripts/verify-systemd.sh), and every
 * directive in it has a comment saying why.
 */
import test from 'ava'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

const REPO = path.resolve(__dirname, '..', '..', '..')
const UNIT = path.join(REPO, 'systemd', 'siblingfs@.service')
const hasAnalyze = spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0

;(hasAnalyze ? test : test.skip)('siblingfs@.service passes systemd-analyze verify', (t) => {
  const r = spawnSync('bash', [path.join(REPO, 'scripts', 'verify-systemd.sh')], { encoding: 'utf8' })
  t.is(r.status, 0, r.stdout + r.stderr)
  t.notRegex(r.stdout + r.stderr, /skipped/)
})

test('every directive of the unit has a why-comment above it', (t) => {
  const lines = fs.readFileSync(UNIT, 'utf8').split('\n')
  const bare: string[] = []
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i].trim()
    if (l === '' || l.startsWith('#') || l.startsWith('[') || l.startsWith('Description=')) continue
    let j = i - 1
    while (j >= 0 && lines[j].trim().startsWith('#') === false && lines[j].trim() !== '' && !lines[j].trim().startsWith('[')) j--
    if (j < 0 || !lines[j].trim().startsWith('#')) bare.push(l)
  }
  t.deepEqual(bare, [])
})
