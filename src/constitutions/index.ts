/**
 * The constitution pool: principles with versions and provenance, merging of near-duplicates,
 * seed-file loaders and renderers. Re-exports only.
 */
export {
  comparisonText,
  ConstitutionPool,
  principleId,
  type AddPrinciplesOptions,
  type ConfirmMergeFn,
  type ConfirmResult,
  type MergeProposalsOptions,
  type PoolChanges,
  type PoolSnapshot,
  type PoolUpdate,
  type PrincipleInput,
  type ProposedPrinciple,
  type SimilarityFn,
} from "./pool.js";
export {
  confirmMergeMessages,
  ConfirmMergeOutputSchema,
  contentWords,
  DEFAULT_EMBEDDING_THRESHOLD,
  DEFAULT_LEXICAL_THRESHOLD,
  embeddingSimilarity,
  lexicalScore,
  lexicalSimilarity,
  oracleConfirm,
  type ConfirmMergeOutput,
  type OracleConfirmOptions,
} from "./similarity.js";
export { detectSeedFormat, loadSeeds, parseSeeds, SEED_FORMATS, type LoadSeedsOptions, type ParseSeedsOptions, type SeedFormat } from "./seeds.js";
export {
  diffConstitutions,
  renderConstitutionJson,
  renderConstitutionMarkdown,
  renderDiffMarkdown,
  type ConstitutionDiff,
  type ConstitutionDiffResult,
  type PrincipleChange,
  type PrincipleField,
  type RenderConstitutionOptions,
} from "./render.js";
