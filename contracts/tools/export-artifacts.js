#!/usr/bin/env node
// Writes the Python package's contract artifacts from a forge output directory:
//   node contracts/tools/export-artifacts.js <forge-out-dir> <dest-dir> [Contract...]
// Each <dest-dir>/<Contract>.json is
//   {"contractName", "abi", "bytecode", "deployedBytecode", "immutableReferences"}
// where immutableReferences lists the [start, length] byte ranges of deployedBytecode that
// hold immutables (filled in at deployment), sorted, so clients can recognise deployed code.
// in that key order, 2-space indented, with a trailing newline, so that a rebuild from the same
// sources is byte-identical (scripts/contracts check relies on that).
"use strict";

const fs = require("fs");
const path = require("path");

const DEFAULT_CONTRACTS = ["TempoStreamChannel", "TestToken"];

function hexObject(section, contract, field) {
  const object = section && section.object;
  if (typeof object !== "string" || !/^0x[0-9a-fA-F]+$/.test(object) || object.length <= 2) {
    throw new Error(`${contract}: ${field} missing or empty in the forge artifact`);
  }
  if (section.linkReferences && Object.keys(section.linkReferences).length > 0) {
    throw new Error(`${contract}: ${field} needs library linking, which is not supported`);
  }
  return object.toLowerCase();
}

function immutableRanges(section) {
  const refs = (section && section.immutableReferences) || {};
  const ranges = [];
  for (const list of Object.values(refs)) {
    for (const ref of list) ranges.push([ref.start, ref.length]);
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return ranges;
}

function main(argv) {
  if (argv.length < 2) {
    process.stderr.write("usage: export-artifacts.js <forge-out-dir> <dest-dir> [Contract...]\n");
    return 2;
  }
  const [outDir, destDir, ...names] = argv;
  const contracts = names.length > 0 ? names : DEFAULT_CONTRACTS;
  fs.mkdirSync(destDir, { recursive: true });
  for (const name of contracts) {
    const source = path.join(outDir, `${name}.sol`, `${name}.json`);
    const forgeArtifact = JSON.parse(fs.readFileSync(source, "utf8"));
    if (!Array.isArray(forgeArtifact.abi)) throw new Error(`${name}: no ABI in ${source}`);
    const artifact = {
      contractName: name,
      abi: forgeArtifact.abi,
      bytecode: hexObject(forgeArtifact.bytecode, name, "bytecode"),
      deployedBytecode: hexObject(forgeArtifact.deployedBytecode, name, "deployedBytecode"),
      immutableReferences: immutableRanges(forgeArtifact.deployedBytecode),
    };
    fs.writeFileSync(path.join(destDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
  }
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`export-artifacts: ${err.message}\n`);
  process.exitCode = 1;
}
