import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// The recipes import the package by its name, as an app does (tsconfig's paths too).
const packageAliases = ["index", "react", "testing"].map((entry) => ({
  find: new RegExp(`^@exportstream/client${entry === "index" ? "" : `/${entry}`}$`),
  replacement: fileURLToPath(new URL(`src/${entry}.ts`, import.meta.url)),
}));

// Four projects, so each npm script runs one kind: `vitest run --project unit`, …
export default defineConfig({
  test: {
    projects: [
      {
        resolve: { alias: packageAliases },
        test: {
          name: "unit",
          include: [
            "test/subscriptions.test.ts",
            "test/crosstab.test.ts",
            "test/multiplex.test.ts",
            "test/client.test.ts",
            "test/react.test.ts",
            "test/fixtures.test.ts",
            "test/shape.test.ts",
            "test/events.test.ts",
            "test/eta.test.ts",
            "test/ssr.test.ts",
            "test/notify.test.ts",
            "test/readme-recipes.test.ts",
            "test/fallback.test.ts",
            "test/lazy.test.ts",
            "test/node.test.ts",
            "test/scenarios-fake.test.ts",
            "test/testing.test.ts",
            "recipes/export-button.test.tsx",
          ],
          typecheck: {
            enabled: true,
            include: ["test/**/*.test-d.ts"],
            tsconfig: "./tsconfig.json",
          },
        },
      },
      {
        // The recipes import the package by its name, as an app does (tsconfig's paths too).
        resolve: { alias: packageAliases },
        test: {
          name: "integration",
          include: ["test/integration.test.ts", "test/package.test.ts", "test/node-example.test.ts", "test/vite-app.test.ts", "test/transparency.test.ts", "test/bff-restart.test.ts", "test/recipes.test.ts", "test/vite-proxy.test.ts", "test/drop-stream.test.ts", "test/scenarios-real.test.ts"],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        // The same suites scaled out: redis-server, 2 backends on it, 2 BFFs
        // with one session secret, and a balancer alternating each client's requests
        // and streams between the BFFs (test/servers.ts).
        test: {
          name: "integration-scaled",
          include: ["test/integration.test.ts", "test/transparency.test.ts"],
          env: { EXPORTSTREAM_SCALE: "2" },
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        test: {
          name: "browser",
          include: ["test/browser.test.ts", "test/transparency-browser.test.ts", "test/notify-browser.test.ts", "test/fallback-browser.test.ts", "test/crosstab-browser.test.ts", "test/scenarios-browser.test.ts"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
