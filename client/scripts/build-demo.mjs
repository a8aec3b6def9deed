// Bundles the demo page into dist/demo/ (what the BFF serves with -static-dir), split as
// a user's bundler splits an app: the client's chunks loaded on demand (cross-tab sharing,
// the poller, downloadOnce's memory) are files of their own under chunks/, fetched by the
// page when it needs them, so the browser tests run the client as apps ship it.
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "demo");

await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(root, "demo", "main.ts")],
  outdir: out,
  entryNames: "demo",
  chunkNames: "chunks/[name]-[hash]",
  splitting: true,
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
});
await Promise.all(
  ["index.html", "style.css"].map((file) => copyFile(join(root, "demo", file), join(out, file))),
);
console.log(`demo built in ${out}`);
