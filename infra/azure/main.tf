# phonebill production on Azure (design: shared seed/000_a90e9f181511ae38.txt, the "운영환경" physical architecture).
# Files: network.tf (VNet, subnets, NSGs, private DNS), aks.tf, appgw.tf, eventhubs.tf,
# topic_access.tf (who may send and listen on each event hub), postgres.tf, redis.tf,
# keyvault.tf (vault, secrets, workload identity), acr.tf, outputs.tf.

locals {
  name = "${var.name}-${var.environment}"
  # Names that must be globally unique and may only hold letters and digits.
  compact = "${var.name}${var.environment}${var.unique_suffix}"

  # The four binaries the Helm chart deploys; each gets a service account
  # <release>-<service> federated with the workload identity.
  services = ["command-service", "query-service", "projector", "kos-mock"]
  chart_fullname = (strcontains(var.helm_release_name, "phonebill")
    ? var.helm_release_name
  : "${var.helm_release_name}-phonebill")
}

data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "main" {
  name     = "rg-${local.name}"
  location = var.location
  tags     = var.tags
}

# Design 8.1.1: law-phonebill-prod, 90-day retention, 5 GB daily cap.
resource "azurerm_log_analytics_workspace" "main" {
  name                = "law-${local.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  sku                 = "PerGB2018"
  retention_in_days   = 90
  daily_quota_gb      = 5
  tags                = var.tags
}
