//! Plans (flavors): how much CPU, memory and connections an instance gets, and
//! the PostgreSQL settings that follow from them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ValidationError;

/// A plan offered to tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    /// Identifier used in requests (`small`).
    pub id: String,
    pub description: String,
    /// CPU cores (a limit on Kubernetes; informational on the local runtime).
    pub cpu: u32,
    pub memory_mb: u32,
    pub max_connections: u32,
    pub storage_gb_min: u32,
    pub storage_gb_max: u32,
}

impl Plan {
    /// PostgreSQL settings derived from the plan, as `postgresql.conf` lines.
    /// `shared_buffers` is a quarter of memory, `effective_cache_size` three
    /// quarters, `work_mem` what memory allows per connection.
    pub fn postgres_settings(&self) -> Vec<(&'static str, String)> {
        let shared = self.memory_mb / 4;
        let work_mem_kb = (self.memory_mb * 1024 / 4 / self.max_connections).max(1024);
        vec![
            ("max_connections", self.max_connections.to_string()),
            ("shared_buffers", format!("{shared}MB")),
            (
                "effective_cache_size",
                format!("{}MB", self.memory_mb * 3 / 4),
            ),
            ("work_mem", format!("{work_mem_kb}kB")),
            (
                "maintenance_work_mem",
                format!("{}MB", (self.memory_mb / 16).max(16)),
            ),
        ]
    }

    /// Settings that only take effect after a restart.
    pub const RESTART_SETTINGS: &'static [&'static str] = &["max_connections", "shared_buffers"];
}

/// The plans Strata offers.
#[derive(Debug, Clone)]
pub struct PlanCatalog {
    plans: Vec<Plan>,
}

impl Default for PlanCatalog {
    fn default() -> Self {
        Self {
            plans: vec![
                Plan {
                    id: "micro".into(),
                    description: "development and tests".into(),
                    cpu: 1,
                    memory_mb: 256,
                    max_connections: 25,
                    storage_gb_min: 1,
                    storage_gb_max: 10,
                },
                Plan {
                    id: "small".into(),
                    description: "small production workloads".into(),
                    cpu: 1,
                    memory_mb: 1024,
                    max_connections: 100,
                    storage_gb_min: 5,
                    storage_gb_max: 100,
                },
                Plan {
                    id: "medium".into(),
                    description: "busy applications".into(),
                    cpu: 2,
                    memory_mb: 4096,
                    max_connections: 200,
                    storage_gb_min: 10,
                    storage_gb_max: 500,
                },
                Plan {
                    id: "large".into(),
                    description: "large databases".into(),
                    cpu: 4,
                    memory_mb: 16384,
                    max_connections: 400,
                    storage_gb_min: 20,
                    storage_gb_max: 2000,
                },
            ],
        }
    }
}

impl PlanCatalog {
    pub fn all(&self) -> &[Plan] {
        &self.plans
    }

    pub fn get(&self, id: &str) -> Result<&Plan, ValidationError> {
        self.plans.iter().find(|p| p.id == id).ok_or_else(|| {
            ValidationError::field(
                "",
                format!(
                    "unknown plan {id:?}; offered: {}",
                    self.plans
                        .iter()
                        .map(|p| p.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    /// The smallest and largest `storage_gb` any plan allows: a size outside
    /// is wrong whatever the plan.
    pub fn storage_gb_bounds(&self) -> (u32, u32) {
        let min = self.plans.iter().map(|p| p.storage_gb_min).min();
        let max = self.plans.iter().map(|p| p.storage_gb_max).max();
        (min.unwrap_or(0), max.unwrap_or(0))
    }

    /// The plan chosen when a request names none.
    pub fn default_plan(&self) -> &Plan {
        &self.plans[0]
    }

    /// Checks that `storage_gb` lies in the plan's range.
    pub fn check_storage(plan: &Plan, storage_gb: u32) -> Result<(), ValidationError> {
        if storage_gb < plan.storage_gb_min || storage_gb > plan.storage_gb_max {
            return Err(ValidationError::field(
                "",
                format!(
                    "must be between {} and {} for plan {}",
                    plan.storage_gb_min, plan.storage_gb_max, plan.id
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_memory() {
        let catalog = PlanCatalog::default();
        let small = catalog.get("small").unwrap();
        let settings = small.postgres_settings();
        assert!(settings.contains(&("shared_buffers", "256MB".to_string())));
        assert!(settings.contains(&("max_connections", "100".to_string())));
    }

    #[test]
    fn unknown_plan_lists_the_offer() {
        let err = PlanCatalog::default().get("huge").unwrap_err();
        assert!(err.errors[0].message.contains("small"));
    }

    #[test]
    fn storage_range() {
        let catalog = PlanCatalog::default();
        let small = catalog.get("small").unwrap();
        assert!(PlanCatalog::check_storage(small, 5).is_ok());
        assert!(PlanCatalog::check_storage(small, 4).is_err());
        assert!(PlanCatalog::check_storage(small, 101).is_err());
    }
}
