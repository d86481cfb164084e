"""baseline: every table of the models as of the first migration

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('uri', sa.String(length=512), nullable=False),
    sa.Column('memory_mib', sa.Integer(), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('zone', sa.String(length=64), nullable=False),
    sa.Column('pools', sa.String(length=512), nullable=False),
    sa.Column('domain_type', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('reachable', sa.Boolean(), nullable=False),
    sa.Column('last_error', sa.String(length=512), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('pools',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('dns', sa.String(length=64), nullable=False),
    sa.Column('network_mode', sa.String(length=80), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('quotas',
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('instances', sa.Integer(), nullable=True),
    sa.Column('vcpus', sa.Integer(), nullable=True),
    sa.Column('memory_mib', sa.Integer(), nullable=True),
    sa.Column('storage_bytes', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'name')
    )
    op.create_table('service_locks',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('heartbeat', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=12), nullable=False),
    sa.Column('access_key', sa.String(length=32), nullable=False),
    sa.Column('secret_key', sa.String(length=64), nullable=False),
    sa.Column('group', sa.String(length=64), nullable=False),
    sa.Column('dn', sa.String(length=255), nullable=False),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('access_key'),
    sa.UniqueConstraint('account_id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('addresses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pool', sa.String(length=64), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('gateway', sa.String(length=45), nullable=False),
    sa.Column('broadcast', sa.String(length=45), nullable=False),
    sa.Column('netmask', sa.String(length=45), nullable=False),
    sa.Column('mac', sa.String(length=17), nullable=False),
    sa.Column('instance_id', sa.String(length=32), nullable=True),
    sa.Column('released_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['pool'], ['pools.name'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mac', name='uq_address_mac'),
    sa.UniqueConstraint('pool', 'ip', name='uq_address_ip')
    )
    op.create_index('ix_addresses_free', 'addresses', ['pool', 'instance_id'], unique=False)
    op.create_index('ix_addresses_instance', 'addresses', ['instance_id'], unique=False)
    op.create_table('images',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('location', sa.String(length=1024), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_reason', sa.String(length=255), nullable=False),
    sa.Column('is_public', sa.Boolean(), nullable=False),
    sa.Column('architecture', sa.String(length=16), nullable=False),
    sa.Column('disk_format', sa.String(length=16), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('kernel_id', sa.String(length=32), nullable=True),
    sa.Column('ramdisk_id', sa.String(length=32), nullable=True),
    sa.Column('root_device_name', sa.String(length=32), nullable=False),
    sa.Column('source_instance_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('owner_id', 'name', name='uq_image_name')
    )
    op.create_index(op.f('ix_images_owner_id'), 'images', ['owner_id'], unique=False)
    op.create_table('key_pairs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('key_type', sa.String(length=16), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('owner_id', 'name', name='uq_keypair_name')
    )
    op.create_table('node_unknown_domains',
    sa.Column('node_name', sa.String(length=64), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('last_seen', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['node_name'], ['nodes.name'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('node_name', 'domain')
    )
    op.create_table('reservations',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('client_token', sa.String(length=64), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('owner_id', 'client_token', name='uq_reservation_token')
    )
    op.create_index(op.f('ix_reservations_owner_id'), 'reservations', ['owner_id'], unique=False)
    op.create_table('s3_buckets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255).with_variant(sa.String(length=255, collation='C'), 'postgresql'), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('acl', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_index(op.f('ix_s3_buckets_owner_id'), 's3_buckets', ['owner_id'], unique=False)
    op.create_table('security_groups',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('owner_id', 'name', name='uq_group_name')
    )
    op.create_table('tags',
    sa.Column('resource_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('value', sa.String(length=256), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('resource_id', 'key')
    )
    op.create_index(op.f('ix_tags_owner_id'), 'tags', ['owner_id'], unique=False)
    op.create_table('instances',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('reservation_id', sa.String(length=32), nullable=False),
    sa.Column('launch_index', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.String(length=32), nullable=False),
    sa.Column('kernel_id', sa.String(length=32), nullable=True),
    sa.Column('ramdisk_id', sa.String(length=32), nullable=True),
    sa.Column('instance_type', sa.String(length=32), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('memory_mib', sa.Integer(), nullable=False),
    sa.Column('key_name', sa.String(length=255), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('task', sa.String(length=16), nullable=True),
    sa.Column('force_stop', sa.Boolean(), nullable=False),
    sa.Column('reboot_pending', sa.Boolean(), nullable=False),
    sa.Column('state_reason_code', sa.String(length=64), nullable=True),
    sa.Column('state_reason_message', sa.String(length=255), nullable=True),
    sa.Column('state_transition_reason', sa.String(length=255), nullable=False),
    sa.Column('shutdown_behavior', sa.String(length=16), nullable=False),
    sa.Column('disable_api_termination', sa.Boolean(), nullable=False),
    sa.Column('availability_zone', sa.String(length=64), nullable=False),
    sa.Column('node_name', sa.String(length=64), nullable=True),
    sa.Column('user_data', sa.Text(), nullable=True),
    sa.Column('private_ip', sa.String(length=45), nullable=True),
    sa.Column('public_ip', sa.String(length=45), nullable=True),
    sa.Column('mac', sa.String(length=17), nullable=True),
    sa.Column('private_dns', sa.String(length=255), nullable=True),
    sa.Column('launch_time', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('terminated_at', sa.DateTime(), nullable=True),
    sa.Column('lease_end', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reservation_id'], ['reservations.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_instances_node_usage', 'instances', ['node_name', 'state', 'vcpus', 'memory_mib'], unique=False)
    op.create_index('ix_instances_owner_id', 'instances', ['owner_id', 'id'], unique=False)
    op.create_index(op.f('ix_instances_reservation_id'), 'instances', ['reservation_id'], unique=False)
    op.create_index('ix_instances_task', 'instances', ['task'], unique=False)
    op.create_table('s3_objects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bucket_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=1024).with_variant(sa.String(length=1024, collation='C'), 'postgresql'), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('last_modified', sa.DateTime(), nullable=False),
    sa.Column('headers_json', sa.Text(), nullable=False),
    sa.Column('metadata_json', sa.Text(), nullable=False),
    sa.Column('acl', sa.String(length=32), nullable=False),
    sa.Column('storage_class', sa.String(length=32), nullable=False),
    sa.Column('segments_json', sa.Text(), nullable=False),
    sa.Column('parts_count', sa.Integer(), nullable=True),
    sa.Column('upload_id', sa.String(length=64), nullable=True),
    sa.Column('checksum_algorithm', sa.String(length=16), nullable=True),
    sa.Column('checksum_value', sa.String(length=128), nullable=True),
    sa.Column('checksum_type', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['bucket_id'], ['s3_buckets.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bucket_id', 'key', name='uq_s3_object_key')
    )
    op.create_index(op.f('ix_s3_objects_owner_id'), 's3_objects', ['owner_id'], unique=False)
    op.create_table('s3_uploads',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('bucket_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=1024).with_variant(sa.String(length=1024, collation='C'), 'postgresql'), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('initiated', sa.DateTime(), nullable=False),
    sa.Column('headers_json', sa.Text(), nullable=False),
    sa.Column('metadata_json', sa.Text(), nullable=False),
    sa.Column('acl', sa.String(length=32), nullable=False),
    sa.Column('storage_class', sa.String(length=32), nullable=False),
    sa.Column('checksum_algorithm', sa.String(length=16), nullable=True),
    sa.Column('checksum_type', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['bucket_id'], ['s3_buckets.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_s3_uploads_key', 's3_uploads', ['bucket_id', 'key', 'id'], unique=False)
    op.create_index(op.f('ix_s3_uploads_owner_id'), 's3_uploads', ['owner_id'], unique=False)
    op.create_table('s3_parts',
    sa.Column('upload_id', sa.String(length=64), nullable=False),
    sa.Column('part_number', sa.Integer(), nullable=False),
    sa.Column('blob_id', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('checksum_value', sa.String(length=128), nullable=True),
    sa.Column('last_modified', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['upload_id'], ['s3_uploads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('upload_id', 'part_number')
    )


def downgrade() -> None:
    op.drop_table('s3_parts')
    op.drop_index(op.f('ix_s3_uploads_owner_id'), table_name='s3_uploads')
    op.drop_index('ix_s3_uploads_key', table_name='s3_uploads')
    op.drop_table('s3_uploads')
    op.drop_index(op.f('ix_s3_objects_owner_id'), table_name='s3_objects')
    op.drop_table('s3_objects')
    op.drop_index('ix_instances_task', table_name='instances')
    op.drop_index(op.f('ix_instances_reservation_id'), table_name='instances')
    op.drop_index('ix_instances_owner_id', table_name='instances')
    op.drop_index('ix_instances_node_usage', table_name='instances')
    op.drop_table('instances')
    op.drop_index(op.f('ix_tags_owner_id'), table_name='tags')
    op.drop_table('tags')
    op.drop_table('security_groups')
    op.drop_index(op.f('ix_s3_buckets_owner_id'), table_name='s3_buckets')
    op.drop_table('s3_buckets')
    op.drop_index(op.f('ix_reservations_owner_id'), table_name='reservations')
    op.drop_table('reservations')
    op.drop_table('node_unknown_domains')
    op.drop_table('key_pairs')
    op.drop_index(op.f('ix_images_owner_id'), table_name='images')
    op.drop_table('images')
    op.drop_index('ix_addresses_instance', table_name='addresses')
    op.drop_index('ix_addresses_free', table_name='addresses')
    op.drop_table('addresses')
    op.drop_table('users')
    op.drop_table('service_locks')
    op.drop_table('quotas')
    op.drop_table('pools')
    op.drop_table('nodes')
