// jest-expo's babel-jest, unchanged, with a second cache that every clone on the machine
// shares. jest's own cache (in the checkout) keys a file by its absolute path, so a new
// clone compiled React Native, Expo and the app anew: about 36 s of CPU of a 49 s cold
// run. Babel's output for a file depends only on its text, its path inside the repo, the
// installed packages and the configs, so those are this cache's key. It is only read:
// a new machine (or a missing, unreadable or mismatched entry) compiles as before.
const { createHash } = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const babelJest = require("babel-jest").default;

const app = __dirname;
const repo = path.resolve(app, "../..");
const MAX_AGE_MS = 30 * 24 * 3600_000;

/** What every file's output depends on besides itself: packages, configs, this file, Node. */
function stampOf() {
  const h = createHash("sha256");
  for (const f of ["node_modules/.package-lock.json", "babel.config.js", "jest.config.js", "jest.transform.js"]) {
    h.update(fs.readFileSync(path.join(app, f))).update("\0");
  }
  return h.update(`${process.version}\0${process.env.NODE_ENV ?? ""}\0${process.env.BABEL_ENV ?? ""}`).digest("hex").slice(0, 16);
}

/** The stamp's folder; other stamps' folders unused for 30 days are removed. */
function cacheFolder() {
  const base = process.env.TTIP_MOBILE_JEST_CACHE || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "ttip-mobile-jest");
  const dir = path.join(base, stampOf());
  fs.mkdirSync(dir, { recursive: true });
  const now = new Date();
  fs.utimesSync(dir, now, now);
  for (const name of fs.readdirSync(base)) {
    const old = path.join(base, name);
    try {
      if (old !== dir && now.getTime() - fs.statSync(old).mtimeMs > MAX_AGE_MS) fs.rmSync(old, { recursive: true, force: true });
    } catch {
      // Another run removed it first.
    }
  }
  return dir;
}

function createTransformer(babelOptions) {
  const babel = babelJest.createTransformer(babelOptions);
  let dir;
  try {
    dir = cacheFolder();
  } catch {
    dir = undefined; // no writable cache folder: babel-jest alone
  }
  // The options name this checkout's folders: the key holds them relative to the repo.
  const options = JSON.stringify(babelOptions ?? {}).split(repo).join("<repo>");

  function keyOf(source, file, o) {
    return createHash("sha256")
      .update(`${options}\0${path.relative(repo, file)}\0${o.instrument ? "instrument" : ""}\0`)
      .update(`${o.supportsDynamicImport}${o.supportsExportNamespaceFrom}${o.supportsStaticESM}${o.supportsTopLevelAwait}\0`)
      .update(source)
      .digest("hex");
  }

  function read(key) {
    try {
      const entry = JSON.parse(fs.readFileSync(path.join(dir, key.slice(0, 2), key), "utf8"));
      return entry.key === key && typeof entry.code === "string" ? { code: entry.code, map: entry.map } : undefined;
    } catch {
      return undefined;
    }
  }

  function write(key, result) {
    const text = JSON.stringify({ key, code: result.code, map: result.map });
    // An output naming this checkout's folder would be wrong in another: not shared.
    if (text.includes(repo)) return;
    try {
      const file = path.join(dir, key.slice(0, 2), key);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, text);
      fs.renameSync(tmp, file);
    } catch {
      // A full or read-only disk: the next run compiles again.
    }
  }

  return {
    canInstrument: babel.canInstrument,
    getCacheKey: babel.getCacheKey,
    getCacheKeyAsync: babel.getCacheKeyAsync,
    process(source, file, o) {
      if (!dir) return babel.process(source, file, o);
      const key = keyOf(source, file, o);
      const hit = read(key);
      if (hit) return hit;
      const result = babel.process(source, file, o);
      write(key, result);
      return result;
    },
    async processAsync(source, file, o) {
      if (!dir) return babel.processAsync(source, file, o);
      const key = keyOf(source, file, o);
      const hit = read(key);
      if (hit) return hit;
      const result = await babel.processAsync(source, file, o);
      write(key, result);
      return result;
    },
  };
}

module.exports = { createTransformer };
