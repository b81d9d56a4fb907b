# Design 5.1: PostgreSQL Flexible Server, General Purpose D4s_v3, 256 GB Premium
# SSD, zone-redundant HA (standby in another zone), 35-day backups with PITR,
# geo-redundant backup (restorable in the paired region, Korea South), TLS 1.2+,
# VNet-integrated in the delegated database subnet (no public access).
# Read replicas of design 5.1.2 are not created yet (see infra/README.md).

# Write-only: the password reaches the server and Key Vault, never the state.
ephemeral "random_password" "postgres_admin" {
  length           = 40
  special          = true
  override_special = "-_" # URL-safe, so it can sit in PHONEBILL_DATABASE_URL unescaped
}

resource "azurerm_postgresql_flexible_server" "main" {
  #checkov:skip=CKV2_AZURE_57:VNet integration (delegated subnet, public access off) gives the same isolation as a private endpoint; Azure allows one or the other
  name                          = "psql-${local.name}-${var.unique_suffix}"
  location                      = azurerm_resource_group.main.location
  resource_group_name           = azurerm_resource_group.main.name
  version                       = "16"
  sku_name                      = "GP_Standard_D4s_v3"
  storage_mb                    = 262144
  storage_tier                  = "P15"
  auto_grow_enabled             = true
  zone                          = "1"
  backup_retention_days         = 35
  geo_redundant_backup_enabled  = true
  delegated_subnet_id           = azurerm_subnet.database.id
  private_dns_zone_id           = azurerm_private_dns_zone.zones["postgres"].id
  public_network_access_enabled = false

  administrator_login               = "phonebill_admin"
  administrator_password_wo         = ephemeral.random_password.postgres_admin.result
  administrator_password_wo_version = var.postgres_password_version

  authentication {
    password_auth_enabled         = true
    active_directory_auth_enabled = true
    tenant_id                     = data.azurerm_client_config.current.tenant_id
  }

  high_availability {
    mode                      = "ZoneRedundant"
    standby_availability_zone = "2"
  }

  # Sunday 02:00 KST = Saturday 17:00 UTC (design 10.2.1).
  maintenance_window {
    day_of_week  = 6
    start_hour   = 17
    start_minute = 0
  }

  tags = var.tags

  lifecycle {
    # After a failover the primary and standby zones swap.
    ignore_changes = [zone, high_availability[0].standby_availability_zone]
  }

  depends_on = [azurerm_private_dns_zone_virtual_network_link.zones]
}

resource "azurerm_postgresql_flexible_server_configuration" "require_secure_transport" {
  name      = "require_secure_transport"
  server_id = azurerm_postgresql_flexible_server.main.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_configuration" "ssl_min_protocol_version" {
  name      = "ssl_min_protocol_version"
  server_id = azurerm_postgresql_flexible_server.main.id
  value     = "TLSv1.2"
}

resource "azurerm_postgresql_flexible_server_configuration" "log_connections" {
  name      = "log_connections"
  server_id = azurerm_postgresql_flexible_server.main.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_configuration" "log_checkpoints" {
  name      = "log_checkpoints"
  server_id = azurerm_postgresql_flexible_server.main.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_database" "phonebill" {
  name      = "phonebill"
  server_id = azurerm_postgresql_flexible_server.main.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}
