CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';
GRANT SELECT, INSERT, UPDATE ON pizza.* TO '{{name}}'@'%';
