//! Budgets as JSON for programs (`carelens budget --format json`, the HTTP API): ε and δ
//! as numbers, not the ledger's integer units.

use carelens_ledger::{Amount, BudgetLine, DATASET_USER};
use serde_json::{Value, json};

/// One budget line: who, their role, the budget granted, spent and left, and the charged
/// queries that failed (when the line may say).
pub fn budget_json(line: &BudgetLine) -> Value {
    let amount = |a: Amount| json!({ "epsilon": a.epsilon_value(), "delta": a.delta_value() });
    let failed = line.failed.map(|f| {
        json!({
            "count": f.count,
            "epsilon": f.spent.epsilon_value(),
            "delta": f.spent.delta_value(),
        })
    });
    json!({
        "name": if line.name == DATASET_USER { "dataset" } else { line.name.as_str() },
        "role": line.role,
        "budget": amount(line.budget),
        "spent": amount(line.spent),
        "remaining": amount(line.remaining),
        "failed": failed,
    })
}
