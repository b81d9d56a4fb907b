//! Pre-checks of a product-change request (UFR-PROD-030), as one pure function so that the
//! validation endpoint and the aggregate decide the same way.

use events::kos::LineStatus;
use events::product_change::{FailedCheck, Precheck};
use uuid::Uuid;

use super::reference::{LineFacts, ProductFacts};

/// What a customer asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRequest {
    pub current_product_code: String,
    pub target_product_code: String,
}

/// The outcome of one pre-check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub check: Precheck,
    pub passed: bool,
    pub message: String,
}

/// Runs every pre-check, in the order of [`Precheck::ALL`], and reports each one.
/// `in_flight` is the request already being carried out for the line, if any.
pub fn run_prechecks(
    line: &LineFacts,
    target: Option<&ProductFacts>,
    request: &ChangeRequest,
    in_flight: Option<Uuid>,
) -> Vec<CheckResult> {
    let target_code = &request.target_product_code;
    Precheck::ALL
        .iter()
        .map(|&check| {
            let (passed, message) = match check {
                Precheck::TargetOnSale => match target {
                    None => (false, format!("product {target_code} does not exist")),
                    Some(p) if !p.on_sale => {
                        (false, format!("product {target_code} is not on sale"))
                    }
                    Some(_) => (true, format!("product {target_code} is on sale")),
                },
                Precheck::SameOperator => match target {
                    Some(p) if p.operator == line.operator => (
                        true,
                        format!("product {target_code} is sold by {}", line.operator),
                    ),
                    Some(p) => (
                        false,
                        format!(
                            "product {target_code} is sold by {}, the line belongs to {}",
                            p.operator, line.operator
                        ),
                    ),
                    None => (
                        false,
                        format!("product {target_code} is not sold by {}", line.operator),
                    ),
                },
                Precheck::LineActive => match line.status {
                    LineStatus::Active => (true, "the line is active".to_owned()),
                    LineStatus::Suspended => (false, "the line is suspended".to_owned()),
                },
                Precheck::TargetDiffers => {
                    if *target_code == line.product_code {
                        (false, format!("the line already has product {target_code}"))
                    } else {
                        (
                            true,
                            "the target differs from the current product".to_owned(),
                        )
                    }
                }
                Precheck::CurrentProductMatches => {
                    if request.current_product_code == line.product_code {
                        (true, "the current product matches the line's".to_owned())
                    } else {
                        (
                            false,
                            format!(
                                "the line's current product is {}, not {}",
                                line.product_code, request.current_product_code
                            ),
                        )
                    }
                }
                Precheck::NoChangeInFlight => match in_flight {
                    Some(id) => (
                        false,
                        format!("change request {id} is still in progress for this line"),
                    ),
                    None => (true, "no other change is in progress".to_owned()),
                },
            };
            CheckResult {
                check,
                passed,
                message,
            }
        })
        .collect()
}

/// The checks that did not pass, as recorded in a rejection.
pub fn failures(results: &[CheckResult]) -> Vec<FailedCheck> {
    results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| FailedCheck {
            check: r.check,
            message: r.message.clone(),
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn active_line() -> LineFacts {
        LineFacts {
            line_number: "010-1234-5678".into(),
            customer_id: "CUST001".into(),
            operator: "KT".into(),
            status: LineStatus::Active,
            product_code: "5G-BASIC-001".into(),
        }
    }

    pub fn premium() -> ProductFacts {
        ProductFacts {
            product_code: "5G-PREMIUM-001".into(),
            operator: "KT".into(),
            on_sale: true,
        }
    }

    pub fn basic_to_premium() -> ChangeRequest {
        ChangeRequest {
            current_product_code: "5G-BASIC-001".into(),
            target_product_code: "5G-PREMIUM-001".into(),
        }
    }

    fn failed(results: &[CheckResult]) -> Vec<Precheck> {
        failures(results).into_iter().map(|f| f.check).collect()
    }

    #[test]
    fn a_valid_request_passes_every_check() {
        let results = run_prechecks(&active_line(), Some(&premium()), &basic_to_premium(), None);
        assert_eq!(results.len(), Precheck::ALL.len());
        assert!(results.iter().all(|r| r.passed), "{results:?}");
    }

    #[test]
    fn a_product_off_sale_fails_only_the_on_sale_check() {
        let off_sale = ProductFacts {
            on_sale: false,
            ..premium()
        };
        let results = run_prechecks(&active_line(), Some(&off_sale), &basic_to_premium(), None);
        assert_eq!(failed(&results), vec![Precheck::TargetOnSale]);
    }

    #[test]
    fn an_unknown_product_fails_on_sale_and_operator() {
        let results = run_prechecks(&active_line(), None, &basic_to_premium(), None);
        assert_eq!(
            failed(&results),
            vec![Precheck::TargetOnSale, Precheck::SameOperator]
        );
    }

    #[test]
    fn another_operators_product_fails_the_operator_check() {
        let other = ProductFacts {
            operator: "LGU".into(),
            ..premium()
        };
        let results = run_prechecks(&active_line(), Some(&other), &basic_to_premium(), None);
        assert_eq!(failed(&results), vec![Precheck::SameOperator]);
    }

    #[test]
    fn a_suspended_line_fails_the_active_check() {
        let line = LineFacts {
            status: LineStatus::Suspended,
            ..active_line()
        };
        let results = run_prechecks(&line, Some(&premium()), &basic_to_premium(), None);
        assert_eq!(failed(&results), vec![Precheck::LineActive]);
    }

    #[test]
    fn changing_to_the_current_product_and_naming_a_wrong_current_product_both_fail() {
        let request = ChangeRequest {
            current_product_code: "LTE-OLD-001".into(),
            target_product_code: "5G-BASIC-001".into(),
        };
        let basic = ProductFacts {
            product_code: "5G-BASIC-001".into(),
            ..premium()
        };
        let results = run_prechecks(&active_line(), Some(&basic), &request, None);
        assert_eq!(
            failed(&results),
            vec![Precheck::TargetDiffers, Precheck::CurrentProductMatches]
        );
    }

    #[test]
    fn a_change_in_flight_blocks_another() {
        let pending = Uuid::new_v4();
        let results = run_prechecks(
            &active_line(),
            Some(&premium()),
            &basic_to_premium(),
            Some(pending),
        );
        assert_eq!(failed(&results), vec![Precheck::NoChangeInFlight]);
        assert!(failures(&results)[0].message.contains(&pending.to_string()));
    }
}
