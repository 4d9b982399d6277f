/**
 * Red-team datasets: the prompt record, file readers (JSONL/JSON/CSV, optionally gzipped), user
 * dataset mapping, the bundled public sets, Chain-of-Utterances wrapping and the train/heldout split.
 * Re-exports only.
 */
export * from "./red-team-prompt.js";
export { formatLocation, type DataLocation } from "./data-error.js";
export { parseCsv, parseCsvRecords, type CsvRecord, type CsvRow, type ParseCsvOptions } from "./csv.js";
export {
  formatFromFileName,
  parseRecords,
  readDataText,
  readRecords,
  RECORD_FORMATS,
  type JsonObjectMode,
  type ParseRecordsOptions,
  type ReadRecordsOptions,
  type RecordFormat,
  type SourceRecord,
} from "./readers.js";
export {
  datasetNameFromFile,
  getField,
  loadUserDataset,
  mapRecords,
  UserDatasetSpecSchema,
  WHOLE_RECORD,
  type FieldLookup,
  type LoadUserDatasetOptions,
  type RecordMapping,
  type UserDatasetSpec,
} from "./mapping.js";
export {
  BUNDLED_DATA_DIR,
  BUNDLED_DATASET_NAMES,
  BUNDLED_DATASETS,
  bundledDataFile,
  bundledDataset,
  extractFirstHumanTurn,
  isBundledDatasetName,
  loadBundled,
  type BundledDataset,
  type BundledDatasetName,
  type LoadBundledOptions,
} from "./bundled.js";
export * from "./chain-of-utterances.js";
export * from "./split.js";
export { HARMBENCH_VAL, loadHarmbenchVal, loadJudgeLabels, loadLabelledFile, type LabelledResponse } from "./judge-labels.js";
export {
  checkContamination,
  normalizedWords,
  type ContaminationMatch,
  type ContaminationOptions,
  type ContaminationReport,
  type EvalTextSet,
  type TextItem,
} from "./contamination.js";
