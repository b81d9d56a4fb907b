# Design 9: Azure Container Registry Premium with geo-replication to the DR region.
# Pushes come from CI (Entra ID auth, no admin user); AKS pulls with its kubelet identity.
resource "azurerm_container_registry" "main" {
  #checkov:skip=CKV_AZURE_139:CI pushes from hosted runners over the public endpoint (Entra ID auth, admin user off); a private endpoint needs runners inside the VNet
  #checkov:skip=CKV_AZURE_164:Docker Content Trust is retired by Azure (trust_policy_enabled is gone in azurerm 5); CI attests each image (provenance, SBOM); verifying that at admission is an open item
  #checkov:skip=CKV_AZURE_166:quarantine needs a scanner that releases each image; design 9 scans with Trivy in CI before the push
  #checkov:skip=CKV_AZURE_233:the registry is zone-redundant in Korea Central; its replica in Korea South cannot be, that region has no availability zones
  name                     = substr("acr${local.compact}", 0, 50)
  location                 = azurerm_resource_group.main.location
  resource_group_name      = azurerm_resource_group.main.name
  sku                      = "Premium"
  admin_enabled            = false
  anonymous_pull_enabled   = false
  zone_redundancy_enabled  = true
  data_endpoint_enabled    = true
  retention_policy_in_days = 30
  tags                     = var.tags

  georeplications {
    location                = var.dr_location
    zone_redundancy_enabled = false
    tags                    = var.tags
  }
}

resource "azurerm_role_assignment" "aks_acr_pull" {
  scope                            = azurerm_container_registry.main.id
  role_definition_name             = "AcrPull"
  principal_id                     = azurerm_kubernetes_cluster.main.kubelet_identity[0].object_id
  skip_service_principal_aad_check = true
}

# CI's identity (.github/workflows/ci.yaml, job "images"). GitHub's OIDC token for a run
# on main is exchanged for it (federated credential): no password or client secret
# exists anywhere. It may push images to this registry and do nothing else.
resource "azurerm_user_assigned_identity" "ci" {
  name                = "phonebill-ci"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "ci_main" {
  name                      = "github-main"
  user_assigned_identity_id = azurerm_user_assigned_identity.ci.id
  audience                  = ["api://AzureADTokenExchange"]
  issuer                    = "https://token.actions.githubusercontent.com"
  subject                   = "repo:${var.github_repository}:ref:refs/heads/main"
}

resource "azurerm_role_assignment" "ci_acr_push" {
  scope                            = azurerm_container_registry.main.id
  role_definition_name             = "AcrPush"
  principal_id                     = azurerm_user_assigned_identity.ci.principal_id
  skip_service_principal_aad_check = true
}
