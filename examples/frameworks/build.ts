// Bundle the four framework pages for the browser (run with Bun or Deno):
//   node_modules/.bin/bun examples/frameworks/build.ts [outdir]
// esbuild bundles each page with the real framework from node_modules;
// .svelte files go through svelte/compiler first. Output: <outdir>/<fw>.js
// (default test-output/frameworks).

import * as esbuild from "esbuild";
import { compile } from "svelte/compiler";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import process from "node:process";

const here = fileURLToPath(new URL(".", import.meta.url));
const outdir = process.argv[2] ?? `${here}../../test-output/frameworks`;

const svelte: esbuild.Plugin = {
  name: "svelte",
  setup(build) {
    build.onLoad({ filter: /\.svelte$/ }, async (args) => {
      const source = await readFile(args.path, "utf8");
      const { js } = compile(source, { filename: args.path, generate: "client", dev: true });
      return { contents: js.code, loader: "js", resolveDir: here };
    });
  },
};

await esbuild.build({
  entryPoints: ["react.tsx", "vue.ts", "svelte.ts", "solid.ts"].map((f) => `${here}${f}`),
  outdir,
  bundle: true,
  format: "esm",
  target: "es2022",
  jsx: "automatic",
  // React development build: StrictMode double-mounts only in development.
  define: {
    "process.env.NODE_ENV": '"development"',
    __VUE_OPTIONS_API__: "true",
    __VUE_PROD_DEVTOOLS__: "false",
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: "false",
  },
  conditions: ["browser", "development"],
  mainFields: ["browser", "module", "main"],
  plugins: [svelte],
  logLevel: "warning",
});
console.log(`[frameworks] built react, vue, svelte, solid into ${outdir}`);
