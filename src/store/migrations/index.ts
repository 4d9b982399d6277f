import { migration as m0001 } from "./0001-initial.js";
import { migration as m0002 } from "./0002-call-cost.js";
import { migration as m0003 } from "./0003-batch-jobs.js";
import { migration as m0004 } from "./0004-record-revisions.js";
import { migration as m0005 } from "./0005-item-index.js";
import { migration as m0006 } from "./0006-item-index-facets.js";

/**
 * One schema step. Migrations are TypeScript modules (not .sql files) so they ship inside dist
 * without a copy step. A published migration is never edited; changes go in a new one.
 */
export interface Migration {
  /** Consecutive from 1; the database records which ones it has applied. */
  readonly version: number;
  /** Stored alongside the version, so a database from a diverging build is detected. */
  readonly name: string;
  readonly sql: string;
}

/** All migrations in the order they are applied. */
export const migrations: readonly Migration[] = [m0001, m0002, m0003, m0004, m0005, m0006];

/** The newest schema version this code knows. */
export const LATEST_SCHEMA_VERSION: number = migrations.length;
