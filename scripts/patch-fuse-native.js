#!/usr/bin/env node
'use strict'

// Applies patches/fuse-native-2.2.6.patch to node_modules/fuse-native (idempotently) and
// builds the native addon from source into node_modules/fuse-native/build/Release, which
// node-gyp-build loads before the (unpatched) upstream prebuilds/.
//
// Runs as our package's postinstall; can also be run by hand: node scripts/patch-fuse-native.js

const fs = require('fs')
const path = require('path')
const { spawnSync } = require('child_process')

const ROOT = path.resolve(__dirname, '..')
const PATCH = path.join(ROOT, 'patches', 'fuse-native-2.2.6.patch')
const EXPECTED_VERSION = '2.2.6'
const EXPECTED_MARK = 'siblingfs-1'

function fail (msg, detail) {
  if (detail) process.stderr.write(String(detail).trimEnd() + '\n')
  process.stderr.write('patch-fuse-native: ERROR: ' + msg + '\n')
  process.exit(1)
}

function run (cmd, args, opts) {
  const res = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts })
  if (res.error) {
    if (res.error.code === 'ENOENT') fail('`' + cmd + '` not found; it is required to patch/build fuse-native (Debian: apt-get install patch build-essential python3)')
    fail('could not run ' + cmd + ': ' + res.error.message)
  }
  return { code: res.status, out: (res.stdout || '') + (res.stderr || '') }
}

// 1. Locate fuse-native and check its version.
let pkgDir
try {
  pkgDir = path.dirname(require.resolve('fuse-native/package.json', { paths: [ROOT] }))
} catch (_) {
  fail('cannot find node_modules/fuse-native from ' + ROOT + ' (run npm install first)')
}
const version = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version
if (version !== EXPECTED_VERSION) {
  fail('fuse-native ' + version + ' is installed at ' + pkgDir + ', but ' + path.relative(ROOT, PATCH) +
    ' is for exactly ' + EXPECTED_VERSION + '; pin "fuse-native": "' + EXPECTED_VERSION + '" or port the patch')
}
if (!fs.existsSync(PATCH)) fail('missing ' + PATCH)

// 2. Apply the patch unless it is already applied.
const patchArgs = ['-p1', '-F0', '-d', pkgDir, '-i', PATCH, '-f', '-s', '--no-backup-if-mismatch']
let state
if (run('patch', [...patchArgs, '-R', '--dry-run']).code === 0) {
  state = 'already patched'
} else {
  const dry = run('patch', [...patchArgs, '-N', '--dry-run'])
  if (dry.code !== 0) fail('the patch does not apply to ' + pkgDir + ' (locally modified fuse-native? remove it and reinstall)', dry.out)
  const real = run('patch', [...patchArgs, '-N'])
  if (real.code !== 0) fail('applying the patch failed', real.out)
  state = 'patched'
}

// 3. Build from source with node-gyp.
function findNodeGyp () {
  const candidates = []
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp)
  const prefix = path.resolve(path.dirname(process.execPath), '..')
  candidates.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))
  candidates.push(path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))
  try { candidates.push(require.resolve('node-gyp/bin/node-gyp.js', { paths: [ROOT] })) } catch (_) {}
  return candidates.find(p => fs.existsSync(p))
}

// Headers: prefer an explicit nodedir (npm passes ~/.npmrc's nodedir as npm_config_nodedir to
// lifecycle scripts); otherwise use the headers installed next to this node binary (e.g. Debian's
// nodejs ships /usr/include/node) so the build works offline; else node-gyp's own cache/download.
function findNodeDir () {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir
  const prefix = path.resolve(path.dirname(process.execPath), '..')
  const inc = path.join(prefix, 'include', 'node')
  if (fs.existsSync(path.join(inc, 'node_api.h')) && fs.existsSync(path.join(inc, 'common.gypi'))) return prefix
  return null
}

const nodeGyp = findNodeGyp()
if (!nodeGyp) fail('node-gyp not found (set npm_config_node_gyp, or install npm alongside ' + process.execPath + ')')
const gypArgs = [nodeGyp, 'rebuild', '--release']
const nodeDir = findNodeDir()
if (nodeDir) gypArgs.push('--nodedir=' + nodeDir)

// Make sure the `node` that binding.gyp shells out to is this one.
const env = { ...process.env, PATH: path.dirname(process.execPath) + path.delimiter + (process.env.PATH || '') }
const build = run(process.execPath, gypArgs, { cwd: pkgDir, env })
if (build.code !== 0) fail('node-gyp build of the patched fuse-native failed (needs a C toolchain, make and python3)', build.out)

const addon = path.join(pkgDir, 'build', 'Release', 'fuse.node')
if (!fs.existsSync(addon)) fail('build finished but ' + addon + ' is missing', build.out)

// 4. Check that require('fuse-native') now loads the patched JS + native build.
const check = run(process.execPath, ['-e', `
  const Fuse = require(process.argv[1])
  const loaded = require(require.resolve('node-gyp-build', { paths: [process.argv[1]] })).path(process.argv[1])
  if (Fuse.PATCHED !== process.argv[2]) { console.error('PATCHED=' + Fuse.PATCHED); process.exit(2) }
  console.log(loaded)
`, pkgDir, EXPECTED_MARK], { cwd: ROOT })
if (check.code !== 0) fail('the patched fuse-native does not load', check.out)
const loadedPath = check.out.trim().split('\n').pop()
if (path.resolve(loadedPath) !== path.resolve(addon)) fail('fuse-native loads ' + loadedPath + ' instead of ' + addon)

console.log('patch-fuse-native: fuse-native ' + version + ' ' + state + ' (' + EXPECTED_MARK + '), built ' + path.relative(ROOT, addon) + (nodeDir ? ' (nodedir ' + nodeDir + ')' : ''))
