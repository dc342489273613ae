//! Budgets as JSON for programs (`carelens budget --format json`, the HTTP API): ε and δ
//! as numbers, not the ledger's integer units; under zCDP accounting, ρ too.

use carelens_ledger::{Amount, BudgetLine, DATASET_USER, RHO_UNITS};
use serde_json::{Value, json};

/// One budget line: who, their role, the budget granted, spent and left, and the charged
/// queries that failed (when the line may say). Under zCDP accounting `rho` holds the
/// spend in ρ (of which `spent` is the conversion at the budget's δ), the ρ the budget
/// holds and what is left; otherwise it is `null`.
pub fn budget_json(line: &BudgetLine) -> Value {
    let amount = |a: Amount| json!({ "epsilon": a.epsilon_value(), "delta": a.delta_value() });
    let zcdp = line.zcdp;
    let failed = line.failed.map(|f| {
        let mut failed = json!({
            "count": f.count,
            "epsilon": f.spent.epsilon_value(),
            "delta": f.spent.delta_value(),
        });
        if zcdp.is_some() {
            failed["rho"] = json!(f.spent_zcdp.rho_value());
        }
        failed
    });
    let rho = zcdp.map(|z| {
        json!({
            "spent": z.spent.rho_value(),
            "remaining": z.remaining_rho as f64 / RHO_UNITS,
            "budget": z.capacity_rho as f64 / RHO_UNITS,
            "delta_spent": z.spent.delta_value(),
        })
    });
    json!({
        "name": if line.name == DATASET_USER { "dataset" } else { line.name.as_str() },
        "role": line.role,
        "budget": amount(line.budget),
        "spent": amount(line.spent),
        "remaining": amount(line.remaining),
        "rho": rho,
        "failed": failed,
    })
}
