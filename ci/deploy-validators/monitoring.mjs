// SPDX-License-Identifier: Apache-2.0
// Validates prometheus-operator resources (PodMonitor, PrometheusRule) for ci/validate-deploy.
//
// Input on stdin: a JSON array of {"source": "file (document n)", "object": {...}}. Output on stdout: one
// line per problem; exit status 1 when there is any, 2 on bad input.
//
// Three checks per object:
//  1. the JSON schema of @kubernetes-models/prometheus-operator (generated from the operator's Go API
//     types: field types, required fields, enums);
//  2. no unknown fields, as the API server's strict field validation (kubectl's default) refuses them:
//     the package's type declarations list every field of every type, and each object is walked
//     against them (the package's own validate() lets unknown fields through);
//  3. for PrometheusRule, each `expr` parses with the PromQL grammar of the Prometheus project
//     (@prometheus-io/lezer-promql, the parser of Prometheus' own UI).
import { readFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { parser } from "@prometheus-io/lezer-promql";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const operatorV1 = join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");

const KINDS = {
  "monitoring.coreos.com/v1 PodMonitor": { Model: PodMonitor, file: join(operatorV1, "PodMonitor.d.ts") },
  "monitoring.coreos.com/v1 PrometheusRule": {
    Model: PrometheusRule,
    file: join(operatorV1, "PrometheusRule.d.ts"),
  },
};

// --- type declarations: the fields of each model class, and the file declaring each field's type ---

const declarations = new Map();

/** The `.d.ts` file an import specifier of `fromFile` points to. */
function resolveImport(specifier, fromFile) {
  const base = specifier.startsWith(".")
    ? join(dirname(fromFile), specifier.replace(/\.js$/, ""))
    : join(modules, specifier.replace(/\.js$/, ""));
  const file = `${base}.d.ts`;
  return existsSync(file) ? file : null;
}

/** `{ fields: Map(name -> {type, file}) }` of the class declared in `file`, or null for an alias type. */
function declaration(file) {
  if (declarations.has(file)) return declarations.get(file);
  const text = readFileSync(file, "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/^import \{ ([^}]+) \} from "([^"]+)";$/gm)) {
    for (const name of m[1].split(",").map((n) => n.trim())) imports.set(name, m[2]);
  }
  const cls = text.match(/^export declare class \w+ extends Model<[^>]+>[^{]*\{\n([\s\S]*?)^}/m);
  let result = null;
  if (cls) {
    const fields = new Map();
    // Fields are at four spaces; nested `{ [key: string]: ... }` maps are deeper and end with `};`.
    for (const m of cls[1].matchAll(/^ {4}"([^"]+)"\??: ([^;\n]*)/gm)) {
      const type = m[2].trim();
      const name = type.replace(/^Array<(.*)>$/, "$1");
      const spec = imports.get(name);
      fields.set(m[1], { map: type === "{", file: spec ? resolveImport(spec, file) : null });
    }
    result = { fields };
  }
  declarations.set(file, result);
  return result;
}

/** Unknown fields of `value` against the class in `file`, as `path: reason` strings. */
function unknownFields(value, file, path, problems) {
  if (value === null || typeof value !== "object") return;
  if (Array.isArray(value)) {
    value.forEach((item, i) => unknownFields(item, file, `${path}[${i}]`, problems));
    return;
  }
  const decl = file && declaration(file);
  if (!decl) return;
  for (const [key, child] of Object.entries(value)) {
    const field = decl.fields.get(key);
    if (!field) {
      const known = [...decl.fields.keys()].join(", ");
      problems.push(`${path ? path + "." : ""}${key}: unknown field (known: ${known})`);
    } else if (!field.map) {
      unknownFields(child, field.file, `${path ? path + "." : ""}${key}`, problems);
    }
  }
}

// --- PromQL ---

function promqlProblems(expr) {
  const problems = [];
  const tree = parser.parse(expr);
  tree.iterate({
    enter(node) {
      if (node.type.isError) {
        problems.push(`syntax error at offset ${node.from}: ${JSON.stringify(expr.slice(node.from, node.from + 20))}`);
      }
    },
  });
  return problems;
}

// --- main ---

let input;
try {
  input = JSON.parse(readFileSync(0, "utf8"));
} catch (e) {
  console.error(`monitoring.mjs: stdin is not JSON: ${e.message}`);
  process.exit(2);
}
let failures = 0;
for (const { source, object } of input) {
  const key = `${object?.apiVersion} ${object?.kind}`;
  const kind = KINDS[key];
  const report = (problem) => {
    failures++;
    console.log(`${source}: ${object?.kind}/${object?.metadata?.name}: ${problem}`);
  };
  if (!kind) {
    report(`not a resource this validator knows (${key})`);
    continue;
  }
  const before = failures;
  try {
    new kind.Model(object).validate();
  } catch (e) {
    report(`schema: ${e.message}`);
  }
  const problems = [];
  unknownFields(object, kind.file, "", problems);
  problems.forEach(report);
  if (object.kind === "PrometheusRule") {
    (object.spec?.groups ?? []).forEach((group, g) =>
      (group.rules ?? []).forEach((rule, r) => {
        for (const p of promqlProblems(String(rule.expr ?? ""))) {
          report(`spec.groups[${g}].rules[${r}].expr: ${p}`);
        }
      }),
    );
  }
  if (failures === before) console.error(`ok ${source}: ${object.kind}/${object.metadata?.name}`);
}
process.exit(failures ? 1 : 0);
