//! Who someone is: national ID, passwords, TOTP, roles and access tokens.

pub mod national_id;
pub mod password;
pub mod tokens;
pub mod totp;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Bond buyers and concert fans alike.
    Citizen,
    Finance,
    Regulator,
    Official,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Citizen => "citizen",
            Role::Finance => "finance",
            Role::Regulator => "regulator",
            Role::Official => "official",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Citizen, Role::Finance, Role::Regulator, Role::Official, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Staff roles see money or other people's data: they must use a second factor.
    pub fn requires_mfa(self) -> bool {
        !matches!(self, Role::Citizen)
    }
}
