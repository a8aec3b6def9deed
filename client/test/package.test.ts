/**
 * What `npm pack` ships: the built ESM + declarations, the sources they map to, the
 * README and package.json — no tests, no demo, no configuration.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { clientDir, inCI, reportMissing } from "./servers.js";

const missing = reportMissing(
  "npm package tests (the built library)",
  ["index.js", "react.js"]
    .map((file) => join(clientDir, "dist", file))
    .filter((path) => !existsSync(path))
    .map((path) => `${path} (npm run build:lib)`),
);

if (missing !== undefined) {
  describe("npm package prerequisites", () => {
    if (inCI) it("are present (CI=true makes a missing one a failure)", () => expect.fail(missing));
    else it.skip(`are missing, so the suite is skipped: ${missing}`, () => {});
  });
}

describe.skipIf(missing !== undefined)("the npm package", () => {
  it("contains only dist, src, README.md and package.json", () => {
    const output = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: clientDir,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    const [pack] = JSON.parse(output) as [{ files: { path: string }[] }];
    const files = pack.files.map((file) => file.path).sort();

    for (const file of files) {
      expect(file).toMatch(/^(dist\/[a-z]+\.(js|d\.ts|js\.map|d\.ts\.map)|src\/[a-z]+\.ts|README\.md|package\.json)$/);
    }
    expect(files).toEqual(expect.arrayContaining(["dist/index.js", "dist/index.d.ts", "dist/react.js", "dist/react.d.ts", "README.md"]));
  });

  it("exports `.` and `./react` as ESM with declarations that exist, and has no runtime dependencies", () => {
    const manifest = JSON.parse(readFileSync(join(clientDir, "package.json"), "utf8")) as {
      type: string;
      exports: Record<string, { types?: string; import?: string } | string>;
      dependencies?: Record<string, string>;
      peerDependenciesMeta: Record<string, { optional: boolean }>;
    };
    expect(manifest.type).toBe("module");
    expect(manifest.dependencies ?? {}).toEqual({});
    expect(manifest.peerDependenciesMeta["react"]?.optional).toBe(true);
    for (const entry of [".", "./react"]) {
      const target = manifest.exports[entry];
      expect(typeof target).toBe("object");
      if (typeof target !== "object") continue;
      for (const path of [target.types, target.import]) expect(existsSync(join(clientDir, path ?? "missing"))).toBe(true);
    }
  });
});
