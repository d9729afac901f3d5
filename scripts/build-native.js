#!/usr/bin/env node
'use strict'
/*
 * Builds the native addon native/build/Release/siblingfs_sys.node with node-gyp.
 * Run by hand (`node scripts/build-native.js`, `npm run build:native`) or from postinstall.
 * Prints one line on success; on failure prints node-gyp's output and a message, exits 1.
 * No dependencies: uses the node-gyp npm names in npm_config_node_gyp, or npm's bundled copy.
 */
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const ROOT = path.resolve(__dirname, '..')
const NATIVE_DIR = path.join(ROOT, 'native')
const OUTPUT = path.join(NATIVE_DIR, 'build', 'Release', 'siblingfs_sys.node')
const SYSTEM_HEADERS = '/usr/include/node/node_api.h'

function fail (message, output) {
  if (output) process.stderr.write(output.endsWith('\n') ? output : output + '\n')
  process.stderr.write(`build-native: ${message}\n`)
  process.exit(1)
}

function findNodeGyp () {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')
  ].filter(Boolean)
  for (const file of candidates) {
    if (fs.existsSync(file)) return file
  }
  fail(`node-gyp not found (looked at: ${candidates.join(', ')}). ` +
    'Install it (npm install -g node-gyp) and set npm_config_node_gyp to its bin/node-gyp.js.')
}

function nodedirConfigured () {
  return Object.keys(process.env).some((k) => k.toLowerCase() === 'npm_config_nodedir' && process.env[k])
}

function main () {
  const nodeGyp = findNodeGyp()
  const args = [nodeGyp, 'rebuild', '--directory', NATIVE_DIR]
  // Offline machines: use the system's Node headers rather than downloading them.
  if (!nodedirConfigured() && fs.existsSync(SYSTEM_HEADERS)) args.push('--nodedir=/usr')

  const res = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  const output = `${res.stdout || ''}${res.stderr || ''}`
  if (res.error) fail(`could not run node-gyp: ${res.error.message}`, output)
  if (res.status !== 0) {
    const why = res.signal ? `killed by ${res.signal}` : `exit code ${res.status}`
    fail(`building the native addon failed (node-gyp ${why}). It needs python3, make and a C compiler.`, output)
  }
  if (!fs.existsSync(OUTPUT)) fail(`node-gyp succeeded but ${path.relative(ROOT, OUTPUT)} is missing`, output)
  process.stdout.write(`build-native: built ${path.relative(ROOT, OUTPUT)}\n`)
}

main()
