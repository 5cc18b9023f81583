// Builds the console into dist/ (or the directory given as the first
// argument): esbuild bundles src/app.jsx and src/login.jsx with the
// pinned packages of package-lock.json, the two HTML shells are copied,
// and dist/SOURCES.sha256 records the hash of every source and every
// output so that a Go test (web_test.go) can tell a stale dist without
// Node. No inline script or style anywhere: the console's CSP forbids them.
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, copyFileSync } from "node:fs";
import { join, relative } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const out = process.argv[2] || join(here, "dist");

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: "src/app.jsx", login: "src/login.jsx" },
  outdir: join(out, "assets"),
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome120", "firefox120", "safari17"],
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  loader: { ".woff2": "dataurl", ".png": "dataurl", ".svg": "dataurl" },
  legalComments: "none",
  logLevel: "warning",
});
// GraphiQL's CSS carries its fonts as data: URLs, which the CSP's
// font-src (default-src 'self') refuses: write each to a file of its own.
{
  const css = join(out, "assets", "app.css");
  let n = 0;
  const text = readFileSync(css, "utf8").replace(/url\(["']?data:font\/(woff2?);base64,([A-Za-z0-9+/=]+)["']?\)/g, (_, ext, b64) => {
    const name = `font-${createHash("sha256").update(b64).digest("hex").slice(0, 12)}.${ext}`;
    writeFileSync(join(out, "assets", name), Buffer.from(b64, "base64"));
    n++;
    return `url(${name})`;
  });
  writeFileSync(css, text);
}
for (const page of ["index.html", "login.html"]) {
  copyFileSync(join(here, "src", page), join(out, page));
}

// Sources: everything the build reads that is ours, plus the lock file
// that pins everything it reads that is not.
function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}
const sha = (p) => createHash("sha256").update(readFileSync(p)).digest("hex");
const sources = [join(here, "build.mjs"), join(here, "package.json"), join(here, "package-lock.json"), ...walk(join(here, "src"))]
  .map((p) => relative(here, p)).sort();
const outputs = walk(out).map((p) => relative(out, p)).sort();
const lines = [
  ...sources.map((p) => `${sha(join(here, p))}  ${p}`),
  ...outputs.map((p) => `${sha(join(out, p))}  dist/${p}`),
];
writeFileSync(join(out, "SOURCES.sha256"), lines.join("\n") + "\n");
