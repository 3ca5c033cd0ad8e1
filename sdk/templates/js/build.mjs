// Build this extension with componentize-js 0.23.0, cached by a hash of its sources.
//
//   npm ci && node build.mjs            # prints build/<hash>/main.wasm
//   node build.mjs --bundle             # also lays out build/bundle/ (manifest.json + dist/main.wasm)
//
// The hash covers src/, vendor/ (the guest SDK), wit/, manifest.json and package-lock.json
// (which pins componentize-js). The JS API is used rather than `jco componentize`, which
// fails in some environments with "failed to get path metadata".
//
// The toolchain is checked first (Node 20+, componentize-js installed by `npm ci`). A build
// error is one `file:line:col: message` line per problem on stderr (exit 1); `--verbose` adds
// the toolchain's full output.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const WORLD = 'runner-ext';
const HASHED = ['src', 'vendor', 'wit', 'manifest.json', 'package-lock.json'].map((p) => join(HERE, p));

async function files(path) {
  const st = await stat(path).catch(() => null);
  if (!st) return [];
  if (st.isFile()) return [path];
  const out = [];
  for (const entry of (await readdir(path, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    out.push(...(await files(join(path, entry.name))));
  }
  return out;
}

async function sourceHash() {
  const digest = createHash('sha256');
  for (const root of HASHED) {
    for (const file of await files(root)) {
      digest.update(relative(HERE, file) + '\0');
      digest.update(await readFile(file));
    }
  }
  return digest.digest('hex').slice(0, 16);
}

const VERBOSE = process.argv.includes('--verbose');

class BuildError extends Error {}

function checkToolchain() {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 20) {
    throw new BuildError(`build.mjs: Node.js 20+ is required, this is ${process.execPath} ${process.version}: install Node 20 or newer`);
  }
  if (!existsSync(join(HERE, 'node_modules', '@bytecodealliance', 'componentize-js'))) {
    throw new BuildError(`build.mjs: componentize-js is not installed: run \`npm ci\` in ${HERE} (Node ${process.version}, npm from the same installation)`);
  }
}

// `node --check` on every source first: a syntax error as file:line:col in well under a
// second, instead of componentize-js's "failed to parse JS source" without a line.
async function checkSyntax() {
  const problems = [];
  for (const file of [...(await files(join(HERE, 'src'))), ...(await files(join(HERE, 'vendor')))]) {
    if (!/\.m?js$/.test(file)) continue;
    const res = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' });
    if (res.status === 0) continue;
    const lines = res.stderr.split('\n');
    const at = lines.findIndex((l) => l.startsWith(file + ':'));
    const line = at >= 0 ? l2n(lines[at].slice(file.length + 1)) : 0;
    const caret = at >= 0 && lines[at + 2] !== undefined ? lines[at + 2].indexOf('^') : -1;
    const message = lines.find((l) => /^\w*Error: /.test(l)) ?? lines.filter(Boolean).pop() ?? 'syntax error';
    problems.push(`${relative(HERE, file)}:${line}:${caret + 1}: ${message}`);
  }
  if (problems.length) throw new BuildError(problems.join('\n'));
}

function l2n(text) {
  const n = parseInt(text, 10);
  return Number.isFinite(n) ? n : 0;
}

async function build(force) {
  checkToolchain();
  const outDir = join(HERE, 'build', await sourceHash());
  const wasm = join(outDir, 'main.wasm');
  if (!force && (await stat(wasm).catch(() => null))?.isFile()) return wasm;
  await checkSyntax();
  const { componentize } = await import('@bytecodealliance/componentize-js');
  await mkdir(outDir, { recursive: true });
  // Relative imports resolve inside the working directory only (it is preopened for the
  // build-time snapshot), so build from this directory: src/app.js imports ../vendor/.
  process.chdir(HERE);
  let component;
  try {
    ({ component } = await componentize({
      sourcePath: join(HERE, 'src', 'app.js'),
      witPath: join(HERE, 'wit'),
      worldName: WORLD,
      // Without this the component imports wasi:http, which extgate's runner never links.
      disableFeatures: ['http', 'fetch-event'],
    }));
  } catch (e) {
    if (VERBOSE) console.error(e);
    const text = String(e?.message ?? e);
    // Errors thrown while the module initializes name the source as `file:line:col`.
    const where = text.match(/((?:src|vendor)\/[^\s:]+):(\d+):(\d+)\s+(\S.*)/);
    const first = text.split('\n').map((l) => l.trim()).find(Boolean) ?? 'componentize-js failed';
    const line = where ? `${where[1]}:${where[2]}:${where[3]}: ${where[4]}` : `src/app.js: ${first}`;
    throw new BuildError(line + (VERBOSE ? '' : '  (--verbose: full output)'));
  }
  await writeFile(wasm + '.tmp', component);
  await rename(wasm + '.tmp', wasm); // atomic: a half-written file never looks cached
  return wasm;
}

async function bundle(wasm) {
  const target = join(HERE, 'build', 'bundle');
  await rm(target, { recursive: true, force: true });
  await mkdir(join(target, 'dist'), { recursive: true });
  await copyFile(join(HERE, 'manifest.json'), join(target, 'manifest.json'));
  await copyFile(wasm, join(target, 'dist', 'main.wasm'));
  return target;
}

try {
  const wasm = await build(process.argv.includes('--force'));
  console.log(process.argv.includes('--bundle') ? await bundle(wasm) : wasm);
} catch (e) {
  if (!(e instanceof BuildError)) throw e;
  console.error(e.message);
  process.exitCode = 1;
}
