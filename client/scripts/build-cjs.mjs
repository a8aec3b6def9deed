// The CommonJS build (dist/cjs, from tsconfig.cjs.json) is CommonJS because of the
// package.json written next to it: the package itself is "type": "module".
import { writeFileSync } from "node:fs";

writeFileSync(new URL("../dist/cjs/package.json", import.meta.url), `${JSON.stringify({ type: "commonjs" })}\n`);
