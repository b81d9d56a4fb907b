# Design 5.2: Azure Cache for Redis Premium P2 (6 GB), clustered (3 shards, one
# replica each), zone-redundant, access key required, TLS only (6380; the plain
# port 6379 stays off), private endpoint in the cache subnet, RDB snapshots every
# 60 minutes. Azure accepts one persistence mode at a time (RDB or AOF, not both):
# RDB hourly meets the design's 1 h RPO, and every Redis view can be refilled from
# the PostgreSQL read tables. Blob soft delete keeps overwritten snapshots 7 days.
resource "azurerm_storage_account" "redis_backup" {
  #checkov:skip=CKV_AZURE_59:Redis persistence writes with the account key over the storage endpoint (the azurerm premium-with-backup example); managed-identity persistence behind the storage firewall is an open item
  #checkov:skip=CKV2_AZURE_33:same: the Redis service writes the snapshots, not the VNet
  #checkov:skip=CKV2_AZURE_40:the RDB connection string Redis needs is key-based
  #checkov:skip=CKV2_AZURE_1:holds only Redis snapshots of rebuildable views; platform-managed keys
  #checkov:skip=CKV_AZURE_33:no queues in this account
  name                            = substr("st${local.compact}rdb", 0, 24)
  location                        = azurerm_resource_group.main.location
  resource_group_name             = azurerm_resource_group.main.name
  account_tier                    = "Standard"
  account_replication_type        = "GZRS"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = true # Redis writes snapshots with the account key
  tags                            = var.tags

  sas_policy {
    expiration_period = "01.00:00:00"
  }

  blob_properties {
    versioning_enabled = true
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }
}

resource "azurerm_redis_cache" "main" {
  name                = "redis-${local.name}-${var.unique_suffix}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  sku_name            = "Premium"
  family              = "P"
  capacity            = 2
  # Each shard is a primary and one replica: the Premium default (more replicas
  # cannot be combined with clustering).
  shard_count                   = 3
  zones                         = var.zones
  redis_version                 = "6"
  non_ssl_port_enabled          = false
  minimum_tls_version           = "1.2"
  public_network_access_enabled = false
  tags                          = var.tags

  redis_configuration {
    authentication_enabled        = true
    maxmemory_policy              = "volatile-lru"
    rdb_backup_enabled            = true
    rdb_backup_frequency          = 60
    rdb_backup_max_snapshot_count = 1
    rdb_storage_connection_string = azurerm_storage_account.redis_backup.primary_blob_connection_string
    aof_backup_enabled            = false
  }

  # Sunday 02:00 KST = Saturday 17:00 UTC.
  patch_schedule {
    day_of_week    = "Saturday"
    start_hour_utc = 17
  }

  lifecycle {
    # The API never returns the connection string (azurerm docs).
    ignore_changes = [redis_configuration[0].rdb_storage_connection_string]
  }
}

resource "azurerm_private_endpoint" "redis" {
  name                = "pe-${local.name}-redis"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  subnet_id           = azurerm_subnet.cache.id
  tags                = var.tags

  private_service_connection {
    name                           = "redis"
    private_connection_resource_id = azurerm_redis_cache.main.id
    subresource_names              = ["redisCache"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "redis"
    private_dns_zone_ids = [azurerm_private_dns_zone.zones["redis"].id]
  }
}
