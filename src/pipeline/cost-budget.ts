import { IterAlignError } from "../spec/errors.js";

/**
 * `loop.costBudget`: before a stage is dispatched, the run's spending so far plus the stage's estimated cost must
 * stay within the budget. The estimate is the stage's mean cost per item in this run's earlier iterations times
 * its items (no estimate before a stage has run once; the budget then still stops the run once it is spent).
 */
export interface BudgetCheck {
  readonly budget: number;
  /** Dollars this run has paid so far (its calls that reached a provider, over every process of the run). */
  readonly spent: number;
  readonly stage: string;
  readonly iteration: number;
  readonly items: number;
  /** Mean dollars per item of this stage in earlier iterations, when it ran before. */
  readonly perItem: number | undefined;
}

/** The stage's estimated cost, and the error that stops the run when it would pass the budget (pure). */
export function checkBudget(check: BudgetCheck): { estimate: number; stop?: IterAlignError } {
  const estimate = check.perItem === undefined ? 0 : check.perItem * check.items;
  if (check.spent + estimate <= check.budget && check.spent < check.budget) return { estimate };
  const why =
    check.spent >= check.budget
      ? `$${check.spent.toFixed(4)} spent of the $${check.budget} budget`
      : `$${check.spent.toFixed(4)} spent, and stage ${check.stage} of iteration ${check.iteration} (${check.items} items at ~$${(check.perItem ?? 0).toFixed(5)} each) would cost ~$${estimate.toFixed(4)}, past the $${check.budget} budget`;
  return {
    estimate,
    stop: new IterAlignError("BUDGET_EXCEEDED", `cost budget: ${why}; stopped before the stage`, {
      details: { budget: check.budget, spent: check.spent, estimate, stage: check.stage, iteration: check.iteration },
    }),
  };
}
