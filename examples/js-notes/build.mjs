// Build this example with componentize-js, cached by a hash of its sources.
//
// Output: build/<hash>/main.wasm (gitignored); prints its path. The hash covers the app
// sources, the guest SDK, the WIT files and package-lock.json (which pins componentize-js),
// so a rebuild happens only when one of them changes (~5–30 s).
//
//   npm ci && node build.mjs [--force] [--bundle]
//
// The JS API is used rather than `jco componentize`, which fails in some environments with
// "failed to get path metadata" (its vendored wasm-tools path access).

import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');
const WIT_ROOT = join(REPO, 'runner', 'wit');
const WORLD = 'runner-ext';
const HASHED = [join(HERE, 'src'), join(REPO, 'sdk', 'js', 'core.js'), join(REPO, 'sdk', 'js', 'guest.js'),
  WIT_ROOT, join(HERE, 'package-lock.json')];

async function files(path) {
  if ((await stat(path)).isFile()) return [path];
  const out = [];
  for (const entry of (await readdir(path, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    out.push(...(await files(join(path, entry.name))));
  }
  return out;
}

export async function sourceHash() {
  const digest = createHash('sha256');
  for (const root of HASHED) {
    for (const file of await files(root)) {
      digest.update(relative(REPO, file) + '\0');
      digest.update(await readFile(file));
    }
  }
  return digest.digest('hex').slice(0, 16);
}

// extgate's package as the root, the upstream package as its dependency (like build_guest.py).
async function assembleWit(target) {
  await rm(target, { recursive: true, force: true });
  await mkdir(join(target, 'deps', 'alga-extension'), { recursive: true });
  await copyFile(join(WIT_ROOT, 'extgate', 'extension.wit'), join(target, 'extension.wit'));
  await copyFile(join(WIT_ROOT, 'alga', 'extension.wit'), join(target, 'deps', 'alga-extension', 'extension.wit'));
  return target;
}

async function build(force) {
  const outDir = join(HERE, 'build', await sourceHash());
  const wasm = join(outDir, 'main.wasm');
  if (!force && (await stat(wasm).catch(() => null))?.isFile()) return wasm;
  // Imported lazily so that a cache hit works without node_modules.
  const { componentize } = await import('@bytecodealliance/componentize-js');
  await mkdir(outDir, { recursive: true });
  // componentize-js resolves relative imports inside the working directory only (it is the
  // directory preopened for the build-time snapshot), so build from the repository root:
  // src/app.js imports the SDK from ../../../sdk/js/.
  process.chdir(REPO);
  const { component } = await componentize({
    sourcePath: join(HERE, 'src', 'app.js'),
    witPath: await assembleWit(join(outDir, 'wit')),
    worldName: WORLD,
    // Without this the component imports wasi:http, which the runner never links.
    disableFeatures: ['http', 'fetch-event'],
  });
  await writeFile(wasm + '.tmp', component);
  await rename(wasm + '.tmp', wasm); // atomic: a half-written file never looks cached
  return wasm;
}

// `--bundle`: also lay out build/bundle/ (manifest.json + dist/main.wasm) for `extgate ext publish`.
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
