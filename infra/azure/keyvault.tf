# Design 7.4.1: Key Vault Premium (HSM-backed), private endpoint, RBAC. It holds the
# secrets the services read (through the Secrets Store CSI driver, see the chart's
# SecretProviderClass per service) and the Application Gateway's TLS certificate.
# Each service reaches it as a user-assigned identity of its own (design 7.2.1),
# federated with that service's Kubernetes service account and allowed to read its own
# secrets alone (local.secret_grants): a compromised query-service pod cannot read the
# token signing key, nor any pod but kos-mock KOS's key. No secret here is a broker
# credential: the services sign in to Event Hubs as these identities.
resource "azurerm_key_vault" "main" {
  #checkov:skip=CKV_AZURE_189:public access is off unless key_vault_allowed_ip_ranges lists the deployer's addresses, and then the firewall denies everyone else
  name                          = substr("kv-${var.name}-${var.environment}-${var.unique_suffix}", 0, 24)
  location                      = azurerm_resource_group.main.location
  resource_group_name           = azurerm_resource_group.main.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "premium"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = length(var.key_vault_allowed_ip_ranges) > 0
  tags                          = var.tags

  network_acls {
    default_action = "Deny"
    bypass         = "AzureServices"
    ip_rules       = var.key_vault_allowed_ip_ranges
  }
}

resource "azurerm_private_endpoint" "key_vault" {
  name                = "pe-${local.name}-kv"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  subnet_id           = azurerm_subnet.endpoints.id
  tags                = var.tags

  private_service_connection {
    name                           = "key-vault"
    private_connection_resource_id = azurerm_key_vault.main.id
    subresource_names              = ["vault"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "key-vault"
    private_dns_zone_ids = [azurerm_private_dns_zone.zones["keyvault"].id]
  }
}

# Whoever runs Terraform writes the secrets.
resource "azurerm_role_assignment" "deployer_key_vault" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

# One identity per reader of secrets: each service, and each migration Job (which alone
# reads the administrator's database URL). A service's identity is also who it is to
# Event Hubs (eventhubs.tf); the migration Jobs' identities hold no Event Hubs role.
resource "azurerm_user_assigned_identity" "services" {
  for_each            = toset(keys(local.secret_grants))
  name                = "phonebill-${each.key}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "services" {
  for_each                  = toset(keys(local.secret_grants))
  name                      = "${var.kubernetes_namespace}-${each.key}"
  user_assigned_identity_id = azurerm_user_assigned_identity.services[each.key].id
  audience                  = ["api://AzureADTokenExchange"]
  issuer                    = azurerm_kubernetes_cluster.main.oidc_issuer_url
  subject                   = "system:serviceaccount:${var.kubernetes_namespace}:${local.chart_fullname}-${each.key}"
}

locals {
  # Which Key Vault secrets each service's identity may read: the chart's
  # secrets.grants, by Key Vault name (a test keeps the two the same).
  secret_grants = {
    command-service         = ["phonebill-command-database-url", "phonebill-redis-url", "phonebill-jwt-signing-key"]
    query-service           = ["phonebill-query-database-url", "phonebill-redis-url"]
    projector               = ["phonebill-projector-database-url", "phonebill-redis-url"]
    kos-mock                = ["phonebill-kos-database-url", "phonebill-redis-url", "phonebill-kos-signing-key"]
    command-service-migrate = ["phonebill-database-url", "phonebill-command-database-url"]
    projector-migrate       = ["phonebill-database-url", "phonebill-projector-database-url", "phonebill-query-role-password"]
    kos-mock-migrate        = ["phonebill-database-url", "phonebill-kos-database-url"]
  }
  secret_grant_pairs = merge([
    for service, secrets in local.secret_grants : {
      for secret in secrets : "${service}/${secret}" => { service = service, secret = secret }
    }
  ]...)
}

# Key Vault RBAC scoped to one secret: the identity reads that secret and no other.
resource "azurerm_role_assignment" "service_secrets" {
  for_each             = local.secret_grant_pairs
  scope                = "${azurerm_key_vault.main.id}/secrets/${each.value.secret}"
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.services[each.value.service].principal_id

  depends_on = [
    azurerm_key_vault_secret.database_url,
    azurerm_key_vault_secret.service_database_url,
    azurerm_key_vault_secret.query_database_url,
    azurerm_key_vault_secret.query_role_password,
    azurerm_key_vault_secret.redis_url,
    azurerm_key_vault_secret.jwt_signing_key,
    azurerm_key_vault_secret.kos_signing_key,
  ]
}

# The secrets, named as the chart's secrets.azureKeyVault.objects expects. This one is the
# administrator's URL (database-admin-url): the migration Jobs' alone, never a service's.
resource "azurerm_key_vault_secret" "database_url" {
  #checkov:skip=CKV_AZURE_41:rotated every 90 days by the runbook (design 7.4.1); an expiry date nobody renews would stop pods from mounting the secret
  name             = "phonebill-database-url"
  key_vault_id     = azurerm_key_vault.main.id
  content_type     = "text/uri"
  value_wo_version = var.postgres_password_version
  value_wo = format(
    "postgres://%s:%s@%s:5432/%s?sslmode=require",
    azurerm_postgresql_flexible_server.main.administrator_login,
    ephemeral.random_password.postgres_admin.result,
    azurerm_postgresql_flexible_server.main.fqdn,
    azurerm_postgresql_flexible_server_database.phonebill.name,
  )

  depends_on = [azurerm_role_assignment.deployer_key_vault, azurerm_private_endpoint.key_vault]
}

# Each writing service's own login (design 7.2: least privilege): its migration Job makes
# the role with this password and hands it the service's schema (PHONEBILL_DATABASE_ADMIN_URL
# is the administrator's URL above, given to the migration Jobs alone); the service connects
# with the URL. Write-only: no password is in the state.
locals {
  service_logins = {
    command   = "phonebill_command"
    projector = "phonebill_projector"
    kos       = "phonebill_kos"
  }
}

ephemeral "random_password" "service_login" {
  for_each = local.service_logins
  length   = 40
  special  = false
}

resource "azurerm_key_vault_secret" "service_database_url" {
  #checkov:skip=CKV_AZURE_41:rotated every 90 days by the runbook (design 7.4.1); an expiry date nobody renews would stop pods from mounting the secret
  for_each         = local.service_logins
  name             = "phonebill-${each.key}-database-url"
  key_vault_id     = azurerm_key_vault.main.id
  content_type     = "text/uri"
  value_wo_version = var.service_login_password_version
  value_wo = format(
    "postgres://%s:%s@%s:5432/%s?sslmode=require",
    each.value,
    ephemeral.random_password.service_login[each.key].result,
    azurerm_postgresql_flexible_server.main.fqdn,
    azurerm_postgresql_flexible_server_database.phonebill.name,
  )

  depends_on = [azurerm_role_assignment.deployer_key_vault, azurerm_private_endpoint.key_vault]
}

# query-service's read-only login (design 7.2: least privilege). The projector's migration
# Job creates the role and sets this password on it (PHONEBILL_QUERY_ROLE_PASSWORD); the
# projector, which owns the read schema, grants it SELECT on the read tables alone;
# query-service connects with the URL.
# Both secrets take the one ephemeral value of an apply, and neither is in the state.
ephemeral "random_password" "query_role" {
  length  = 40
  special = false
}

resource "azurerm_key_vault_secret" "query_role_password" {
  #checkov:skip=CKV_AZURE_41:rotated every 90 days by the runbook (design 7.4.1); an expiry date nobody renews would stop pods from mounting the secret
  name             = "phonebill-query-role-password"
  key_vault_id     = azurerm_key_vault.main.id
  content_type     = "text/plain"
  value_wo_version = var.query_role_password_version
  value_wo         = ephemeral.random_password.query_role.result

  depends_on = [azurerm_role_assignment.deployer_key_vault, azurerm_private_endpoint.key_vault]
}

resource "azurerm_key_vault_secret" "query_database_url" {
  #checkov:skip=CKV_AZURE_41:rotated every 90 days by the runbook (design 7.4.1); an expiry date nobody renews would stop pods from mounting the secret
  name             = "phonebill-query-database-url"
  key_vault_id     = azurerm_key_vault.main.id
  content_type     = "text/uri"
  value_wo_version = var.query_role_password_version
  value_wo = format(
    "postgres://phonebill_query:%s@%s:5432/%s?sslmode=require",
    ephemeral.random_password.query_role.result,
    azurerm_postgresql_flexible_server.main.fqdn,
    azurerm_postgresql_flexible_server_database.phonebill.name,
  )

  depends_on = [azurerm_role_assignment.deployer_key_vault, azurerm_private_endpoint.key_vault]
}

resource "azurerm_key_vault_secret" "redis_url" {
  #checkov:skip=CKV_AZURE_41:rotated every 90 days by the runbook (design 7.4.1); an expiry date nobody renews would stop pods from mounting the secret
  name         = "phonebill-redis-url"
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/uri"
  # rediss = TLS on 6380; the access key is percent-encoded for the URL.
  value = format(
    "rediss://:%s@%s:%d",
    urlencode(azurerm_redis_cache.main.primary_access_key),
    azurerm_redis_cache.main.hostname,
    azurerm_redis_cache.main.ssl_port,
  )

  depends_on = [azurerm_role_assignment.deployer_key_vault, azurerm_private_endpoint.key_vault]
}

# The token signing key (service_kit::auth): the private half for command-service (Key
# Vault), the public half for every service (helm_values output, a plain chart value,
# and command-service's /.well-known/jwks.json). In the Terraform state for the same
# reason as KOS's key below.
resource "tls_private_key" "jwt_signing" {
  algorithm = "ED25519"

  lifecycle {
    replace_triggered_by = [terraform_data.jwt_signing_key_version]
  }
}

resource "terraform_data" "jwt_signing_key_version" {
  input = var.jwt_signing_key_version
}

locals {
  # `kid:<base64 DER>` as the services read it; the version is the kid, so tokens name
  # the key that signed them. During a rotation the previous public keys stay listed.
  jwt_signing_key = format("k%d:%s", var.jwt_signing_key_version,
  replace(replace(tls_private_key.jwt_signing.private_key_pem, "/-----[A-Z ]+-----/", ""), "\n", ""))
  jwt_verify_keys = join(",", concat([format("k%d:%s", var.jwt_signing_key_version,
  replace(replace(tls_private_key.jwt_signing.public_key_pem, "/-----[A-Z ]+-----/", ""), "\n", ""))], var.jwt_previous_verify_keys))
}

resource "azurerm_key_vault_secret" "jwt_signing_key" {
  #checkov:skip=CKV_AZURE_41:rotated by the runbook with an overlap of public keys; an expiry date nobody renews would stop command-service from starting
  name         = "phonebill-jwt-signing-key"
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"
  value        = local.jwt_signing_key

  depends_on = [azurerm_role_assignment.deployer_key_vault, azurerm_private_endpoint.key_vault]
}

# KOS's message signing key (service_kit::signed): the private half for kos-mock (Key
# Vault), the public half for its consumers (helm_values output, a plain chart value).
# Unlike the generated passwords, this key is in the Terraform state: its public half must
# outlive the apply, which an ephemeral key cannot. The state is in the private storage
# account only the deployer reaches.
resource "tls_private_key" "kos_signing" {
  algorithm = "ED25519"

  lifecycle {
    replace_triggered_by = [terraform_data.kos_signing_key_version]
  }
}

resource "terraform_data" "kos_signing_key_version" {
  input = var.kos_signing_key_version
}

locals {
  # `kid:<base64 DER>` as the services read it: a PEM's body is the DER in base64.
  kos_signing_key = format("kos%d:%s", var.kos_signing_key_version,
  replace(replace(tls_private_key.kos_signing.private_key_pem, "/-----[A-Z ]+-----/", ""), "\n", ""))
  kos_verify_key = format("kos%d:%s", var.kos_signing_key_version,
  replace(replace(tls_private_key.kos_signing.public_key_pem, "/-----[A-Z ]+-----/", ""), "\n", ""))
}

resource "azurerm_key_vault_secret" "kos_signing_key" {
  #checkov:skip=CKV_AZURE_41:rotated by the runbook with an overlap of public keys; an expiry date nobody renews would stop kos-mock from starting
  name         = "phonebill-kos-signing-key"
  key_vault_id = azurerm_key_vault.main.id
  content_type = "text/plain"
  value        = local.kos_signing_key

  depends_on = [azurerm_role_assignment.deployer_key_vault, azurerm_private_endpoint.key_vault]
}
