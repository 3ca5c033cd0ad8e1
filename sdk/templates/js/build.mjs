// Build this extension with componentize-js 0.23.0, cached by a hash of its sources.
//
//   npm ci && node build.mjs            # prints build/<hash>/main.wasm
//   node build.mjs --bundle             # also lays out build/bundle/ (manifest.json + dist/main.wasm)
//
// The hash covers src/, vendor/ (the guest SDK), wit/, manifest.json and package-lock.json
// (which pins componentize-js). The JS API is used rather than `jco componentize`, which
// fails in some environments with "failed to get path metadata".

import { createHash } from 'node:crypto';
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

async function build(force) {
  const outDir = join(HERE, 'build', await sourceHash());
  const wasm = join(outDir, 'main.wasm');
  if (!force && (await stat(wasm).catch(() => null))?.isFile()) return wasm;
  const { componentize } = await import('@bytecodealliance/componentize-js');
  await mkdir(outDir, { recursive: true });
  // Relative imports resolve inside the working directory only (it is preopened for the
  // build-time snapshot), so build from this directory: src/app.js imports ../vendor/.
  process.chdir(HERE);
  const { component } = await componentize({
    sourcePath: join(HERE, 'src', 'app.js'),
    witPath: join(HERE, 'wit'),
    worldName: WORLD,
    // Without this the component imports wasi:http, which extgate's runner never links.
    disableFeatures: ['http', 'fetch-event'],
  });
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

const wasm = await build(process.argv.includes('--force'));
console.log(process.argv.includes('--bundle') ? await bundle(wasm) : wasm);
