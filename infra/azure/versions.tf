terraform {
  # 1.11: write-only arguments, so generated passwords never land in the state.
  required_version = ">= 1.11.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.65 renamed federated_identity_credential.parent_id to user_assigned_identity_id.
      version = "~> 4.65"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7" # ephemeral random_password
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.1" # ED25519 keys
    }
  }

  # State lives in an Azure Storage account created once by hand (infra/README.md,
  # "Azure resources"): terraform init -backend-config=backend.hcl
  backend "azurerm" {}
}

provider "azurerm" {
  subscription_id = var.subscription_id

  features {
    key_vault {
      purge_soft_delete_on_destroy = false
    }
    resource_group {
      prevent_deletion_if_contains_resources = true
    }
  }
}
