// Runs firmware tests and scripts under real MicroPython: the webassembly port from npm, driven by Node.js.
//
// How this works
// --------------
// The port (@micropython/micropython-webassembly-pyscript, version pinned in package-lock.json beside this
// file) is installed on first use into .cache/micropython in the repository (or $EVPILOT_MP_CACHE).
// For every test module (or the script) a fresh interpreter is loaded, and the files it may read are copied
// into its in-memory filesystem at the same place relative to each other as on disk:
//
//   <repo>/firmware, host, tests/firmware, tests/vectors, bench -> /repo/...  (the working directory)
//   <repo>/../shared (or $EVPILOT_SHARED)                  ->  /shared     (so ../shared still works)
//   each --data PATH (relative to the repository)           ->  /repo/PATH
//
// /repo/firmware is on sys.path, so `import evpilot` works as on a board. The port has no host filesystem
// mount, hence the copy (about 5 MB, a few milliseconds).
//
// Test mode prints one JSON line per test function on stdout, in source order:
//   {"test": "tests/firmware/test_x.py::test_y", "ok": true, "ms": 0.4, "output": "..."}
//   {"test": "...", "ok": false, "error": "Traceback ...", ...}   {"test": "...", "skipped": "reason"}
// then one line per module: {"module": "tests/firmware/test_x.py", "ok": bool, "heap_total": bytes, ...}.
// A module that fails to import gives only the module line, with "error". What the tests print is returned
// in "output", never mixed into stdout. Functions named in the module's MICROPYTHON_SKIP list are skipped.
//
// Script mode (--script) runs one file as __main__ with sys.argv set; its output passes straight through,
// and one JSON line about the heap goes to stderr at the end.
//
// The heap: --heap is the interpreter's initial GC heap. This port does not raise MemoryError when the heap
// is full: after a collection fails it adds another heap area, and frees areas again once they are empty.
// So the runner compares the GC total (micropython.mem_info) at the end of the run with the one at start
// and reports "heap_grew"; with an explicit --heap, a script whose heap grew fails (exit 3). Growth that
// was given back before the end is not seen: a script that must prove a peak fits calls
// micropython.mem_info() at its peak, or checks gc.mem_alloc() itself. Default heap: 1m.
//
// Usage:
//   node tests/micropython/run.mjs [--heap SIZE] [--pystack WORDS] [--data PATH]... TEST_FILE...
//   node tests/micropython/run.mjs [--heap SIZE] [--pystack WORDS] [--data PATH]... --script FILE [ARG...]
//   node tests/micropython/run.mjs --setup          (install the port only)
// SIZE is bytes with an optional k or m suffix (64k, 2m). Exit status: 0 all passed, 1 a test or the script
// failed, 2 usage or set-up error, 3 the script needed more heap than --heap.

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");
const SHARED = path.resolve(process.env.EVPILOT_SHARED || path.join(REPO, "..", "shared"));
const CACHE = path.resolve(process.env.EVPILOT_MP_CACHE || path.join(REPO, ".cache", "micropython"));
const PORT_MODULE = "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs";
// Repository folders every run can read (tests/vectors: the project's own test vectors).
const MIRRORED = ["firmware", "sim", "host", "tests/firmware", "tests/vectors", "bench"];
const DEFAULT_HEAP = 1024 * 1024;

function fail(message) {
  process.stderr.write("run.mjs: error: " + message + "\n");
  process.exit(2);
}

function parseSize(text) {
  const m = /^(\d+)([kKmM]?)$/.exec(text || "");
  if (!m) fail("bad size '" + text + "' (examples: 65536, 64k, 2m)");
  return parseInt(m[1], 10) * { "": 1, k: 1024, m: 1048576 }[m[2].toLowerCase()];
}

function parseArgs(argv) {
  const opts = { heap: null, pystack: null, data: [], script: null, scriptArgs: [], tests: [], setup: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--heap") opts.heap = parseSize(argv[++i]);
    else if (a === "--pystack") opts.pystack = parseSize(argv[++i]);
    else if (a === "--data") opts.data.push(argv[++i]);
    else if (a === "--setup") opts.setup = true;
    else if (a === "--script") {
      opts.script = argv[++i];
      opts.scriptArgs = argv.slice(i + 1);
      break;
    } else if (a.startsWith("-")) fail("unknown option " + a);
    else opts.tests.push(a);
  }
  if (!opts.setup && !opts.script && opts.tests.length === 0) fail("give test files, --script FILE or --setup");
  return opts;
}

// --- installing the port ---------------------------------------------------------------------------------

function installed() {
  const lock = path.join(CACHE, "package-lock.json");
  return (
    fs.existsSync(path.join(CACHE, PORT_MODULE)) &&
    fs.existsSync(lock) &&
    fs.readFileSync(lock, "utf8") === fs.readFileSync(path.join(HERE, "package-lock.json"), "utf8")
  );
}

function install() {
  if (installed()) return;
  // Install beside the cache and rename, so an interrupted or concurrent install never leaves half a port.
  const tmp = CACHE + ".tmp-" + process.pid;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  for (const f of ["package.json", "package-lock.json"]) fs.copyFileSync(path.join(HERE, f), path.join(tmp, f));
  process.stderr.write("run.mjs: installing the MicroPython webassembly port into " + CACHE + "\n");
  const npm = spawnSync("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], {
    cwd: tmp,
    stdio: ["ignore", "ignore", "inherit"],
  });
  if (npm.error || npm.status !== 0) {
    fs.rmSync(tmp, { recursive: true, force: true });
    fail("npm ci failed (" + (npm.error ? npm.error.message : "exit " + npm.status) + ")");
  }
  if (!installed()) {
    fs.rmSync(CACHE, { recursive: true, force: true });
    try {
      fs.renameSync(tmp, CACHE);
    } catch (e) {
      if (!installed()) throw e; // another process won the race with the same lock file: use its copy
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}

// --- the interpreter's filesystem --------------------------------------------------------------------------

const fileCache = new Map(); // host path -> bytes, read once per run and copied into every interpreter

function listFiles(hostPath, out) {
  let st;
  try {
    st = fs.statSync(hostPath);
  } catch {
    return out; // a folder the checkout does not have (yet) is simply not mirrored
  }
  if (st.isFile()) out.push(hostPath);
  else if (st.isDirectory()) {
    for (const name of fs.readdirSync(hostPath).sort()) {
      if (name.startsWith(".") || name === "__pycache__" || name === "node_modules") continue;
      listFiles(path.join(hostPath, name), out);
    }
  }
  return out;
}

function mirrorPlan(opts) {
  // [hostRoot, guestRoot, relative paths under hostRoot]
  const repoPaths = MIRRORED.concat(opts.data);
  if (opts.script) repoPaths.push(path.dirname(path.relative(REPO, path.resolve(opts.script))));
  for (const t of opts.tests) repoPaths.push(path.dirname(path.relative(REPO, path.resolve(t))));
  const files = [];
  for (const p of new Set(repoPaths)) {
    if (p.startsWith("..")) fail(p + " is outside the repository; ../shared is mirrored already");
    for (const f of listFiles(path.join(REPO, p), [])) files.push([f, "/repo/" + path.relative(REPO, f)]);
  }
  for (const f of listFiles(SHARED, [])) files.push([f, "/shared/" + path.relative(SHARED, f)]);
  return files.map(([host, guest]) => [host, guest.split(path.sep).join("/")]);
}

function populate(FS, plan) {
  FS.mkdirTree("/repo");
  for (const [host, guest] of plan) {
    let data = fileCache.get(host);
    if (data === undefined) {
      data = fs.readFileSync(host);
      fileCache.set(host, data);
    }
    FS.mkdirTree(guest.slice(0, guest.lastIndexOf("/")) || "/");
    FS.writeFile(guest, data);
  }
}

// --- one interpreter ---------------------------------------------------------------------------------------

const PRELUDE = `
import sys, io, os, json, micropython
os.chdir('/repo')
sys.path.insert(0, '/repo/sim')
sys.path.insert(0, '/repo/firmware')

def _evp_trace(e):
    s = io.StringIO()
    sys.print_exception(e, s)
    return s.getvalue()

def _evp_call(fn):
    try:
        fn()
    except BaseException as e:
        return _evp_trace(e)
    return None
`;

async function loadInterpreter(loadMicroPython, opts, plan) {
  const sink = { lines: [], passthrough: false };
  const write = (line) => {
    if (sink.passthrough) process.stdout.write(line + "\n");
    else sink.lines.push(line);
  };
  const config = { heapsize: opts.heap || DEFAULT_HEAP, stdout: write, stderr: write, linebuffer: true };
  if (opts.pystack) config.pystack = opts.pystack;
  const mp = await loadMicroPython(config);
  populate(mp.FS, plan);
  mp.runPython(PRELUDE);
  const flush = () => {
    // The port buffers a line until its newline: hand over what a script printed without one.
    for (const key of ["_stdoutBuffer", "_stderrBuffer"]) {
      const buf = mp._module[key];
      if (buf && buf.length) {
        write(mp._module._textDecoder.decode(new Uint8Array(buf)));
        mp._module[key] = [];
      }
    }
  };
  const takeOutput = () => {
    flush();
    const text = sink.lines.join("\n");
    sink.lines = [];
    return text;
  };
  const heapTotal = () => {
    const saved = sink.passthrough;
    sink.passthrough = false;
    takeOutput();
    mp.runPython("micropython.mem_info()");
    const m = /GC: total: (\d+)/.exec(takeOutput());
    sink.passthrough = saved;
    return m ? parseInt(m[1], 10) : null;
  };
  // runPython returns nothing useful here: values come back through a global (None arrives as null).
  const evaluate = (expr) => {
    mp.runPython("_evp_r = " + expr);
    return mp.globals.get("_evp_r");
  };
  return { mp, sink, takeOutput, flush, heapTotal, evaluate };
}

function isPythonError(e) {
  return e && e.name === "PythonError";
}

// Test functions in source order, as pytest collects them.
function testNames(source) {
  const names = [];
  for (const m of source.matchAll(/^def (test\w*)\s*\(/gm)) if (!names.includes(m[1])) names.push(m[1]);
  return names;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function runTestModule(loadMicroPython, opts, plan, file) {
  const rel = path.relative(REPO, path.resolve(file)).split(path.sep).join("/");
  const dir = path.posix.dirname(rel);
  const modname = path.posix.basename(rel, ".py");
  const names = testNames(fs.readFileSync(path.resolve(file), "utf8"));
  const t0 = performance.now();
  const it = await loadInterpreter(loadMicroPython, opts, plan);
  const startHeap = it.heapTotal();
  const moduleLine = { module: rel, ok: true, tests: names.length };
  try {
    it.mp.runPython(`sys.path.insert(0, '/repo/${dir}')\nimport ${modname} as _evp_m`);
  } catch (e) {
    moduleLine.ok = false;
    moduleLine.error = isPythonError(e) ? e.message : String((e && e.stack) || e);
    moduleLine.output = it.takeOutput();
    emit(moduleLine);
    return false;
  }
  const skip = JSON.parse(it.evaluate("json.dumps([str(n) for n in getattr(_evp_m, 'MICROPYTHON_SKIP', ())])"));
  it.takeOutput();
  let aborted = null;
  for (const name of names) {
    const line = { test: rel + "::" + name };
    if (aborted) {
      Object.assign(line, { ok: false, error: "not run: the interpreter aborted in an earlier test: " + aborted });
    } else if (skip.includes(name)) {
      line.skipped = "CPython-only (MICROPYTHON_SKIP)";
    } else {
      const t = performance.now();
      try {
        const tb = it.evaluate(`_evp_call(_evp_m.${name})`);
        line.ok = tb === null || tb === undefined;
        if (!line.ok) line.error = tb;
      } catch (e) {
        // Not a Python exception: the interpreter itself died (wasm trap, out of JS memory).
        aborted = String((e && e.message) || e);
        Object.assign(line, { ok: false, error: "the interpreter aborted: " + ((e && e.stack) || e) });
      }
      line.ms = Math.round((performance.now() - t) * 1000) / 1000;
      line.output = it.takeOutput();
    }
    if (line.ok === false) moduleLine.ok = false;
    emit(line);
  }
  if (!aborted) {
    const endHeap = it.heapTotal();
    Object.assign(moduleLine, { heap: opts.heap || DEFAULT_HEAP, heap_total: endHeap, heap_grew: endHeap > startHeap });
  }
  moduleLine.ms = Math.round((performance.now() - t0) * 1000) / 1000;
  emit(moduleLine);
  return moduleLine.ok;
}

async function runScript(loadMicroPython, opts, plan) {
  const file = path.resolve(opts.script);
  const rel = path.relative(REPO, file).split(path.sep).join("/");
  const guest = "/repo/" + rel;
  const it = await loadInterpreter(loadMicroPython, opts, plan);
  const startHeap = it.heapTotal();
  it.mp.runPython(
    `sys.path.insert(0, '${path.posix.dirname(guest)}')\nsys.argv[:] = ${JSON.stringify([rel].concat(opts.scriptArgs))}`,
  );
  it.sink.passthrough = true;
  let status = 0;
  const t0 = performance.now();
  try {
    // Compiled with its path, so tracebacks name the file; run as __main__.
    it.mp.runPython(
      `with open(${JSON.stringify(guest)}) as _evp_f:\n    _evp_src = _evp_f.read()\n` +
        `_evp_g = {'__name__': '__main__', '__file__': ${JSON.stringify(guest)}}\n` +
        `exec(compile(_evp_src, ${JSON.stringify(rel)}, 'exec'), _evp_g)`, // _evp_g keeps the script's data alive
    );
  } catch (e) {
    if (isPythonError(e) && e.type === "SystemExit") {
      const m = /SystemExit: (\d+)\s*$/.exec(e.message);
      status = m ? parseInt(m[1], 10) : 0;
    } else {
      it.flush();
      process.stderr.write(isPythonError(e) ? e.message : String((e && e.stack) || e) + "\n");
      status = 1;
    }
  }
  const ms = performance.now() - t0;
  it.flush();
  const endHeap = status === 0 || status === 1 ? it.heapTotal() : null;
  const grew = endHeap !== null && endHeap > startHeap;
  process.stderr.write(
    JSON.stringify({
      script: rel,
      ok: status === 0,
      ms: Math.round(ms * 1000) / 1000,
      heap: opts.heap || DEFAULT_HEAP,
      heap_total: endHeap,
      heap_grew: grew,
    }) + "\n",
  );
  if (status === 0 && grew && opts.heap) {
    process.stderr.write(`run.mjs: ${rel} needed more than --heap ${opts.heap} bytes (the GC heap grew to ${endHeap})\n`);
    status = 3;
  }
  return status;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  install();
  if (opts.setup) return 0;
  const { loadMicroPython } = await import(pathToFileURL(path.join(CACHE, PORT_MODULE)).href);
  const plan = mirrorPlan(opts);
  if (opts.script) return runScript(loadMicroPython, opts, plan);
  let ok = true;
  for (const t of opts.tests) {
    if (!fs.existsSync(t)) fail("no such test file: " + t);
    ok = (await runTestModule(loadMicroPython, opts, plan, t)) && ok;
  }
  return ok ? 0 : 1;
}

process.exitCode = await main();
