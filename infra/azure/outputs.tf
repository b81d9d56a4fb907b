# `terraform output -raw helm_values > prod-inputs.yaml` gives the second values
# file of the production deploy (after values-prod.yaml); see infra/README.md.
output "helm_values" {
  description = "Installation-specific Helm values (no secrets)."
  value = yamlencode({
    image = {
      registry = azurerm_container_registry.main.login_server
    }
    kafka = {
      brokers = "${azurerm_eventhub_namespace.main.name}.servicebus.windows.net:9093"
      # What the services' Entra ID tokens are for: this namespace.
      oauthScope = "https://${azurerm_eventhub_namespace.main.name}.servicebus.windows.net/.default"
    }
    secrets = {
      azureKeyVault = {
        name      = azurerm_key_vault.main.name
        tenantId  = data.azurerm_client_config.current.tenant_id
        clientIds = { for service, identity in azurerm_user_assigned_identity.services : service => identity.client_id }
      }
    }
    ingress = {
      host = var.public_host
    }
    jwt = {
      verifyKeys = local.jwt_verify_keys
    }
    kosSigning = {
      verifyKeys = local.kos_verify_key
    }
  })
}

output "resource_group_name" {
  value = azurerm_resource_group.main.name
}

output "aks_cluster_name" {
  value = azurerm_kubernetes_cluster.main.name
}

output "acr_login_server" {
  value = azurerm_container_registry.main.login_server
}

output "key_vault_name" {
  value = azurerm_key_vault.main.name
}

output "service_identity_client_ids" {
  value = { for service, identity in azurerm_user_assigned_identity.services : service => identity.client_id }
}

output "app_gateway_public_ip" {
  value = azurerm_public_ip.app_gateway.ip_address
}

output "postgres_fqdn" {
  value = azurerm_postgresql_flexible_server.main.fqdn
}

output "redis_hostname" {
  value = azurerm_redis_cache.main.hostname
}

# The CI workflow's repository variables (infra/README.md, "Releases").
output "ci_variables" {
  description = "GitHub repository variables for .github/workflows/ci.yaml (no secrets)."
  value = {
    AZURE_CLIENT_ID       = azurerm_user_assigned_identity.ci.client_id
    AZURE_TENANT_ID       = data.azurerm_client_config.current.tenant_id
    AZURE_SUBSCRIPTION_ID = var.subscription_id
    ACR_NAME              = azurerm_container_registry.main.name
    ACR_LOGIN_SERVER      = azurerm_container_registry.main.login_server
  }
}
